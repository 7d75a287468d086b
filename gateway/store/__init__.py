"""Block lists, the audit log and receipt routes, behind one Store protocol.

``open_store(url)`` picks the backend from GATEWAY_DATABASE_URL; the caller
then awaits ``store.open()`` (connect and migrate) and ``store.close()``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from gateway.errors import ConfigError
from gateway.store.base import Store

__all__ = ["Store", "mask_url", "open_store"]

_SQLITE_PREFIX = "sqlite:///"


def mask_url(url: str) -> str:
    """The URL with any password replaced by '***' (safe to log and print)."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "<unparsable URL>"
    if not password:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    userinfo = netloc[0].rsplit(":", 1)[0] if ":" in netloc[0] else netloc[0]
    return parts._replace(netloc=f"{userinfo}:***@{netloc[1]}").geturl()


def open_store(database_url: str) -> Store:
    """A Store for the URL, not yet opened.

    sqlite:///relative/path, sqlite:////absolute/path, sqlite:///:memory:,
    postgresql://user:pass@host:port/db (or postgres://).
    """
    url = database_url.strip()
    if url.startswith(_SQLITE_PREFIX):
        path = url[len(_SQLITE_PREFIX):]
        if not path or "?" in path:
            raise ConfigError(
                f"database URL {mask_url(url)!r}: expected sqlite:///PATH "
                "(three slashes, then the file path; four for an absolute path)"
            )
        from gateway.store.sqlite import SqliteStore

        return SqliteStore(path)
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in ("postgresql", "postgres"):
        from gateway.store.postgres import PostgresStore

        return PostgresStore(url)
    if scheme == "sqlite":
        raise ConfigError(
            "database URL: sqlite URLs have no host; use sqlite:///relative/path "
            "or sqlite:////absolute/path"
        )
    shown = f"scheme {scheme!r}" if scheme else "a URL without a scheme"
    raise ConfigError(
        f"database URL has {shown}; expected sqlite:///PATH or postgresql://USER@HOST/DB"
    )
