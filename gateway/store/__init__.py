"""Block lists, the audit log, receipt routes and the outbox, behind one Store protocol.

``open_store(url)`` picks the backend from GATEWAY_DATABASE_URL; the caller
then awaits ``store.open()`` (connect and migrate) and ``store.close()``.
``migrate(url)`` and ``schema_version(url)`` serve ``gateway migrate``.
"""

from __future__ import annotations

import hashlib
import re
from urllib.parse import parse_qsl, urlencode, urlsplit

from gateway.errors import ConfigError
from gateway.store.base import Store

__all__ = ["Store", "event_channel", "mask_url", "migrate", "open_store", "schema_version"]

_SQLITE_PREFIX = "sqlite:///"
_SECRET_PARAM = re.compile(r"(?i)((?:^|&)(?:ssl)?password=)[^&]*")
CHANNEL = "gateway_events"


def mask_url(url: str) -> str:
    """The URL with any password replaced by '***' (safe to log and print): the
    userinfo's (everything after its first ':') and password= / sslpassword=
    query parameters."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "<unparsable URL>"
    query = _SECRET_PARAM.sub(r"\1***", parts.query)
    if not password and query == parts.query:
        return url
    if password:
        userinfo, host = parts.netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]  # the password is all after the first ':'
        parts = parts._replace(netloc=f"{user}:***@{host}")
    return parts._replace(query=query).geturl()


def event_channel(schema: str | None) -> str:
    """The NOTIFY channel of a schema's events: a bounded identifier (PostgreSQL
    channel names are at most 63 bytes, schema names may be as long)."""
    if schema is None:
        return CHANNEL
    return f"{CHANNEL}_{hashlib.sha1(schema.encode()).hexdigest()[:16]}"


def _split_schema(url: str) -> tuple[str, str | None]:
    """postgresql://...?schema=NAME -> (the URL without it, NAME): tables in that schema."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schemas = [v for k, v in query if k == "schema"]
    if not schemas:
        return url, None
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    return parts._replace(query=rest).geturl(), schemas[-1]


def open_store(database_url: str) -> Store:
    """A Store for the URL, not yet opened.

    sqlite:///relative/path, sqlite:////absolute/path, sqlite:///:memory:,
    postgresql://user:pass@host:port/db (or postgres://), optionally with
    ?schema=NAME to keep the tables in that schema (created if missing).
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

        dsn, schema = _split_schema(url)
        if schema is None:
            return PostgresStore(dsn)
        return PostgresStore(dsn, schema=schema, channel=event_channel(schema))
    if scheme == "sqlite":
        raise ConfigError(
            "database URL: sqlite URLs have no host; use sqlite:///relative/path "
            "or sqlite:////absolute/path"
        )
    shown = f"scheme {scheme!r}" if scheme else "a URL without a scheme"
    raise ConfigError(
        f"database URL has {shown}; expected sqlite:///PATH or postgresql://USER@HOST/DB"
    )


async def schema_version(database_url: str) -> int:
    """The schema version the database is at (0: empty), read without migrating.

    ConfigError for a bad URL, StoreError when the database cannot be read.
    """
    store = open_store(database_url)
    from gateway.store.sqlite import SqliteStore

    if isinstance(store, SqliteStore):
        from gateway.store.sqlite_conn import read_schema_version

        return await read_schema_version(store.path)
    from gateway.store.postgres_pool import read_schema_version as read_pg_version

    return await read_pg_version(*_split_schema(database_url.strip()))


async def migrate(database_url: str) -> tuple[int, int]:
    """Apply pending migrations; returns (version before, version after).

    StoreError when the schema is newer than this gateway knows (nothing changed).
    """
    before = await schema_version(database_url)
    store = open_store(database_url)
    try:
        await store.open()
    finally:
        await store.close()
    return before, await schema_version(database_url)
