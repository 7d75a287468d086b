"""Password hashes: the format, verification, strict parsing."""

from __future__ import annotations

import pytest

from gateway import credentials as C


def test_round_trip_and_format() -> None:
    h = C.hash_password(b"secret", n=1024)
    text = str(h)
    assert text.startswith("scrypt$n=1024$r=8$p=1$") and len(text.split("$")) == 6
    parsed = C.parse_hash(text)
    assert parsed == h
    assert C.verify(b"secret", parsed)
    assert not C.verify(b"secreT", parsed)
    assert not C.verify(b"", parsed)


def test_salted() -> None:
    assert C.hash_password(b"secret", n=1024) != C.hash_password(b"secret", n=1024)


def test_known_vector() -> None:  # RFC 7914 section 12, second vector (n=1024, r=8, p=16)
    h = C.hash_password(b"password", n=1024, r=8, p=16, salt=b"NaCl")
    assert h.digest.hex().startswith("fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b373162")


@pytest.mark.parametrize("bad", [
    "", "secret", "scrypt", "scrypt$n=16384$r=8$p=1$salt", "bcrypt$n=16384$r=8$p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
    "scrypt$n=1000$r=8$p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",          # n not a power of 2
    "scrypt$n=1073741824$r=8$p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",    # too costly
    "scrypt$n=16384$r=0$p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
    "scrypt$n=16384$r=8$p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA$extra",
    "scrypt$n=16384$r=8$p=1$c2FsdHNhbHQ$a",                              # hash too short
    "scrypt$n=16384$r=8$p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA=="])      # padded: not what we print
def test_wrong_formats_are_refused_without_echoing(bad: str) -> None:
    with pytest.raises(ValueError) as info:
        C.parse_hash(bad)
    assert len(bad) < 20 or bad not in str(info.value)  # the configuration line is never echoed


def test_equal_is_plain_equality() -> None:
    assert C.equal(b"secret", b"secret")
    assert not C.equal(b"secret", b"secret1")
    assert not C.equal(b"", b"\x00")


@pytest.mark.parametrize("data, expected", [
    (b"pw\n", b"pw"), (b"pw\r\n", b"pw"), (b"pw", b"pw"), (b"pw\n\n", b"pw\n"), (b" pw \n", b" pw ")])
def test_one_trailing_newline_stripped(data: bytes, expected: bytes) -> None:
    assert C.strip_newline(data) == expected
