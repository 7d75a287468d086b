"""Certificate expiry for the metrics: the notAfter of PEM certificates, read without a crypto library.

`not_after(pem)` walks just enough DER (RFC 5280: Certificate -> tbsCertificate -> validity)
to return each certificate's notAfter as unix time. The TLS code reports the earliest one of
each file in use as `gateway_certificate_expiry_seconds` on every load and reload.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import re
from pathlib import Path

_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", re.DOTALL)
_SEQUENCE, _UTC_TIME, _GENERALIZED_TIME, _VERSION = 0x30, 0x17, 0x18, 0xA0


class CertificateFormatError(ValueError):
    """A PEM block that is not an X.509 certificate we can read the validity of."""


def _tlv(der: bytes, at: int) -> tuple[int, int, int]:
    """(tag, start of content, end of content) of the DER element at `at`."""
    if at + 2 > len(der):
        raise CertificateFormatError("truncated")
    tag, length = der[at], der[at + 1]
    at += 2
    if length & 0x80:
        n = length & 0x7F
        if not 1 <= n <= 4 or at + n > len(der):
            raise CertificateFormatError("bad length")
        length = int.from_bytes(der[at:at + n], "big")
        at += n
    if at + length > len(der):
        raise CertificateFormatError("truncated")
    return tag, at, at + length


def _time(tag: int, text: bytes) -> float:
    """UTCTime (YYMMDDHHMMSSZ) or GeneralizedTime (YYYYMMDDHHMMSSZ) as unix time."""
    s = text.decode("ascii", "replace")
    if not s.endswith("Z"):
        raise CertificateFormatError(f"time not in UTC: {s!r}")
    if tag == _UTC_TIME and len(s) == 13:
        year = int(s[:2])
        s = f"{1900 + year if year >= 50 else 2000 + year}{s[2:]}"  # RFC 5280 4.1.2.5.1
    if len(s) != 15 or not s[:14].isdigit():
        raise CertificateFormatError(f"bad time: {text!r}")
    fields = (int(s[0:4]), int(s[4:6]), int(s[6:8]), int(s[8:10]), int(s[10:12]), int(s[12:14]))
    return float(calendar.timegm((*fields, 0, 0, 0)))


def der_not_after(der: bytes) -> float:
    """notAfter of one DER certificate."""
    tag, start, _ = _tlv(der, 0)  # Certificate
    if tag != _SEQUENCE:
        raise CertificateFormatError("not a SEQUENCE")
    tag, at, _ = _tlv(der, start)  # tbsCertificate
    if tag != _SEQUENCE:
        raise CertificateFormatError("no tbsCertificate")
    tag, _, end = _tlv(der, at)
    if tag == _VERSION:  # [0] version, optional
        at = end
    for _field in ("serialNumber", "signature", "issuer"):
        _, _, at = _tlv(der, at)
    tag, at, _ = _tlv(der, at)  # validity
    if tag != _SEQUENCE:
        raise CertificateFormatError("no validity")
    _, _, at = _tlv(der, at)  # notBefore
    tag, start, end = _tlv(der, at)
    if tag not in (_UTC_TIME, _GENERALIZED_TIME):
        raise CertificateFormatError("no notAfter")
    return _time(tag, der[start:end])


def not_after(pem: bytes) -> list[float]:
    """notAfter of every certificate in a PEM text, in file order (keys and other blocks skipped)."""
    out = []
    for block in _PEM.findall(pem):
        try:
            der = base64.b64decode(b"".join(block.split()), validate=True)
        except binascii.Error:
            raise CertificateFormatError("bad base64") from None
        out.append(der_not_after(der))
    return out


def earliest_expiry(path: Path) -> float | None:
    """The earliest notAfter in a PEM file (the chain stops working then); None without certificates.
    OSError and CertificateFormatError go to the caller."""
    times = not_after(path.read_bytes())
    return min(times) if times else None
