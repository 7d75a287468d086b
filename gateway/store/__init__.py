"""Block lists, the audit log, receipt routes and the outbox, behind one Store protocol.

``open_store(url)`` picks the backend from GATEWAY_DATABASE_URL; the caller
then awaits ``store.open()`` (connect and migrate) and ``store.close()``.
``migrate(url)`` and ``schema_version(url)`` serve ``gateway migrate``.
URL handling lives here too: ``check_database_url`` (one-line ConfigError),
``mask_url`` (safe even for URLs that cannot be parsed), ``resolve_database_url``
and ``require_existing`` (``database_must_exist``) for the start.
"""

from __future__ import annotations

import hashlib
import os
import re
from urllib.parse import parse_qsl, urlencode, urlsplit

from gateway.errors import ConfigError, StoreError
from gateway.store.base import Store

__all__ = [
    "Store", "check_database_url", "check_postgres_url", "describe_database", "event_channel", "mask_url",
    "migrate", "open_store", "require_existing", "resolve_database_url", "schema_version", "sqlite_path", "url_password",
]

_SQLITE_PREFIX = "sqlite:///"
_SECRET_PARAM = re.compile(r"(?i)((?:^|&)(?:ssl)?password=)[^&]*")
CHANNEL = "gateway_events"


def _password_span(url: str) -> tuple[int, int] | None:
    """Where the userinfo's password is in url, found without trusting a URL parser: from the
    first ':' after 'scheme://' to the last '@'. A password with '/', '#', '?' or '@' that was
    never percent-encoded (a parser would split it) is still found whole."""
    start = url.find("://")
    if start < 0:
        return None
    start += 3
    at = url.rfind("@", start)
    colon = url.find(":", start, at) if at >= 0 else -1
    if colon < 0 or any(c in url[start:colon] for c in "/?#"):
        return None  # no userinfo, or the ':' is in the path or query
    return colon + 1, at


def url_password(url: str) -> str | None:
    """The password in the URL's userinfo as written (None: none), for scrubbing messages."""
    span = _password_span(url)
    return url[span[0]:span[1]] if span and span[1] > span[0] else None


def mask_url(url: str) -> str:
    """The URL with any password replaced by '***' (safe to log and print): the
    userinfo's (everything after its first ':', up to the last '@', even when the
    URL cannot be parsed) and password= / sslpassword= query parameters."""
    span = _password_span(url)
    if span and span[1] > span[0]:
        url = f"{url[:span[0]]}***{url[span[1]:]}"
    head, sep, query = url.partition("?")
    return head + sep + _SECRET_PARAM.sub(r"\1***", query)


_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")


def _check_hosts(hosts: str, shown: str) -> None:
    """host[:port][,host[:port]...] (asyncpg's multi-host form): each port 1-65535."""
    for host in hosts.split(","):
        if host.startswith("["):
            end = host.find("]")
            if end < 0:
                raise ConfigError(f"database URL {shown!r}: unclosed '[' in an IPv6 host")
            rest = host[end + 1:]
            port = rest.removeprefix(":")
        else:
            port = host.rpartition(":")[2] if ":" in host else ""
        if port and not (port.isdigit() and 1 <= int(port) <= 65535):
            raise ConfigError(f"database URL {shown!r}: port {port!r} is not a number from 1 to 65535")


def check_postgres_url(url: str) -> None:
    """ConfigError (with the URL masked) unless url parses as postgresql://USER:PASS@HOST:PORT/DB
    with at most one ?schema= naming one identifier."""
    shown = mask_url(url)
    try:
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
    except ValueError as exc:
        raise ConfigError(f"database URL {shown!r}: {exc}") from None
    if "@" in url[url.find("://") + 3 + len(parts.netloc):]:
        raise ConfigError(
            f"database URL {shown!r}: cannot be parsed; percent-encode '/', '#', '?' and '@' "
            "in the user name, password and parameters (%2F %23 %3F %40)"
        )
    _check_hosts(parts.netloc.rpartition("@")[2], shown)
    for port in (v for k, v in query if k == "port"):
        _check_hosts(",".join(f"h:{p}" for p in port.split(",")), shown)
    schemas = [v for k, v in query if k == "schema"]
    if len(schemas) > 1:
        raise ConfigError(f"database URL {shown!r}: schema is given {len(schemas)} times")
    if schemas and not _SCHEMA_NAME.match(schemas[0]):
        raise ConfigError(
            f"database URL {shown!r}: schema {schemas[0]!r} is not one identifier "
            "(letters, digits, _ and $, not starting with a digit, at most 63)"
        )


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


def check_database_url(database_url: str) -> None:
    """ConfigError (one line, the URL masked) unless the URL is one open_store accepts."""
    url = database_url.strip()
    if url.startswith(_SQLITE_PREFIX):
        path = url[len(_SQLITE_PREFIX):]
        if not path or "?" in path:
            raise ConfigError(
                f"database URL {mask_url(url)!r}: expected sqlite:///PATH "
                "(three slashes, then the file path; four for an absolute path)"
            )
        return
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in ("postgresql", "postgres"):
        check_postgres_url(url)
        return
    if scheme == "sqlite":
        raise ConfigError(
            "database URL: sqlite URLs have no host; use sqlite:///relative/path "
            "or sqlite:////absolute/path"
        )
    shown = f"scheme {scheme!r}" if scheme else "a URL without a scheme"
    raise ConfigError(
        f"database URL has {shown}; expected sqlite:///PATH or postgresql://USER@HOST/DB"
    )


def sqlite_path(database_url: str) -> str | None:
    """The absolute file of a sqlite:/// URL, a relative path resolved against the current folder
    (None: PostgreSQL or :memory:). Resolved once at start, so where the file is never depends on
    a later change of folder."""
    url = database_url.strip()
    if not url.startswith(_SQLITE_PREFIX) or url == _SQLITE_PREFIX + ":memory:":
        return None
    return os.path.abspath(url[len(_SQLITE_PREFIX):])


def resolve_database_url(database_url: str) -> str:
    """sqlite:///relative/path made absolute against the current folder; other URLs as they are."""
    path = sqlite_path(database_url)
    return _SQLITE_PREFIX + path if path else database_url.strip()


def describe_database(database_url: str) -> str:
    """Where the data lives, safe to log: the SQLite file's absolute path, or the masked URL."""
    return sqlite_path(database_url) or mask_url(database_url.strip())


async def require_existing(database_url: str) -> None:
    """StoreError unless the database already holds the gateway's tables (database_must_exist):
    a mistyped path or schema must not start a gateway on an empty block list."""
    if await schema_version(database_url) == 0:
        raise StoreError(
            f"database {describe_database(database_url)} does not exist or has no gateway tables "
            "(database_must_exist is on; create it with `gateway migrate`)"
        )


def open_store(database_url: str) -> Store:
    """A Store for the URL, not yet opened.

    sqlite:///relative/path, sqlite:////absolute/path, sqlite:///:memory:,
    postgresql://user:pass@host:port/db (or postgres://), optionally with
    ?schema=NAME to keep the tables in that schema (created if missing).
    """
    url = database_url.strip()
    check_database_url(url)
    if url.startswith(_SQLITE_PREFIX):
        from gateway.store.sqlite import SqliteStore

        return SqliteStore(url[len(_SQLITE_PREFIX):])
    from gateway.store.postgres import PostgresStore

    dsn, schema = _split_schema(url)
    if schema is None:
        return PostgresStore(dsn)
    return PostgresStore(dsn, schema=schema, channel=event_channel(schema))


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
