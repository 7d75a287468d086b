"""notAfter read from PEM by gateway.certs, checked against the cryptography package's reading."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import trustme
from cryptography import x509

from gateway.certs import CertificateFormatError, earliest_expiry, not_after


def expected(pem: bytes) -> float:
    return x509.load_pem_x509_certificate(pem).not_valid_after_utc.timestamp()


@pytest.mark.parametrize("when", [
    datetime(2031, 5, 17, 8, 30, 15, tzinfo=UTC),   # UTCTime (before 2050)
    datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC),
    datetime(2050, 1, 1, 0, 0, 0, tzinfo=UTC),      # GeneralizedTime from 2050 on (RFC 5280)
    datetime(2199, 3, 4, 5, 6, 7, tzinfo=UTC),
])
def test_not_after_matches_cryptography(when: datetime) -> None:
    leaf = trustme.CA().issue_cert("gw.example", not_after=when)
    pem = leaf.cert_chain_pems[0].bytes()
    assert not_after(pem) == [expected(pem)] == [when.timestamp()]


def test_rsa_and_ca_certificates() -> None:
    ca = trustme.CA(key_type=trustme.KeyType.RSA)
    pem = ca.cert_pem.bytes()
    assert not_after(pem) == [expected(pem)]


def test_a_chain_file_reports_its_earliest_certificate(tmp_path: Path) -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("gw.example", not_after=datetime(2030, 1, 2, tzinfo=UTC))
    path = tmp_path / "chain.pem"  # key, leaf, CA (valid until 3000)
    path.write_bytes(leaf.private_key_pem.bytes() + leaf.cert_chain_pems[0].bytes() + ca.cert_pem.bytes())
    assert len(not_after(path.read_bytes())) == 2  # the key block is skipped
    assert earliest_expiry(path) == datetime(2030, 1, 2, tzinfo=UTC).timestamp()


def test_a_file_without_certificates(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    path.write_bytes(trustme.CA().issue_cert("x").private_key_pem.bytes())
    assert earliest_expiry(path) is None


@pytest.mark.parametrize("body", [b"not base64 !!", b"MAAA", b"MIIBCgKCAQEA", b""])
def test_garbage_is_a_format_error(body: bytes) -> None:
    pem = b"-----BEGIN CERTIFICATE-----\n" + body + b"\n-----END CERTIFICATE-----\n"
    with pytest.raises(CertificateFormatError):
        not_after(pem)
