"""Application passwords at rest: scrypt (hashlib), salted, in a self-describing string.

    scrypt$n=16384$r=8$p=1$<salt>$<hash>

salt and hash are standard base64 without padding (16 and 32 bytes). `gateway hash-password`
prints such a line; an account's `password_hash` holds it. Pure functions: no I/O, no clock.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from dataclasses import dataclass

SCHEME = "scrypt"
DEFAULT_N, DEFAULT_R, DEFAULT_P = 1 << 14, 8, 1  # ~16 MB and ~45 ms on one core of this machine
SALT_BYTES, HASH_BYTES = 16, 32
MAX_N, MAX_R, MAX_P = 1 << 20, 32, 16
MAX_MEMORY = 256 * 1024 * 1024  # a hash that needs more than this is refused (it would stall binds)
MAX_PASSWORD = 8  # SMPP 3.4: password is a C-Octet String of at most 9 octets with its NUL
FORMAT = "scrypt$n=<N>$r=<r>$p=<p>$<salt>$<hash>"
_PATTERN = re.compile(r"scrypt\$n=(\d{1,8})\$r=(\d{1,3})\$p=(\d{1,3})\$([A-Za-z0-9+/]{8,88})\$([A-Za-z0-9+/]{16,88})")


@dataclass(frozen=True, slots=True)
class ScryptHash:
    n: int
    r: int
    p: int
    salt: bytes
    digest: bytes

    def __str__(self) -> str:
        return f"{SCHEME}$n={self.n}$r={self.r}$p={self.p}${_b64(self.salt)}${_b64(self.digest)}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _memory(n: int, r: int, p: int) -> int:
    return 128 * r * (n + p + 2)


def parse_hash(text: str) -> ScryptHash:
    """A ScryptHash, or ValueError saying what is wrong (the message never contains the text)."""
    match = _PATTERN.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not a hash printed by `gateway hash-password` (expected {FORMAT})")
    n, r, p = (int(g) for g in match.groups()[:3])
    if n < 2 or n & (n - 1) or n > MAX_N:
        raise ValueError(f"scrypt n must be a power of 2 up to {MAX_N}")
    if not 1 <= r <= MAX_R or not 1 <= p <= MAX_P or _memory(n, r, p) > MAX_MEMORY:
        raise ValueError(f"scrypt r (1-{MAX_R}) or p (1-{MAX_P}) out of range, or over {MAX_MEMORY >> 20} MB")
    try:
        salt, digest = _unb64(match.group(4)), _unb64(match.group(5))
    except (binascii.Error, ValueError):
        raise ValueError(f"salt or hash is not base64 (expected {FORMAT})") from None
    if len(digest) < 16:
        raise ValueError("hash shorter than 16 bytes")
    return ScryptHash(n, r, p, salt, digest)


def _scrypt(password: bytes, n: int, r: int, p: int, salt: bytes, dklen: int) -> bytes:
    return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, maxmem=_memory(n, r, p) + (1 << 20), dklen=dklen)


def hash_password(password: bytes, n: int = DEFAULT_N, r: int = DEFAULT_R, p: int = DEFAULT_P,
                  salt: bytes | None = None) -> ScryptHash:
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    return ScryptHash(n, r, p, salt, _scrypt(password, n, r, p, salt, HASH_BYTES))


def verify(password: bytes, stored: ScryptHash) -> bool:
    """Costs one scrypt whatever the answer; the comparison is constant-time."""
    derived = _scrypt(password, stored.n, stored.r, stored.p, stored.salt, len(stored.digest))
    return hmac.compare_digest(derived, stored.digest)


def equal(presented: bytes, expected: bytes) -> bool:
    """Constant-time for plaintext passwords, their length included (digests have one length)."""
    return hmac.compare_digest(hashlib.sha256(presented).digest(), hashlib.sha256(expected).digest())


def strip_newline(data: bytes) -> bytes:
    """One trailing newline off (LF or CRLF), as `echo` and secret files add it."""
    if data.endswith(b"\r\n"):
        return data[:-2]
    return data[:-1] if data.endswith(b"\n") else data
