"""Command line: arguments and exit codes only."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from gateway.errors import ConfigError, StoreError
from gateway.store.base import ALL_KINDS, SCOPES

EXIT_CONFIG = 2
EXIT_STORE = 1
ADMIN_COMMANDS = frozenset({"blocks", "events", "migrate", "deactivations", "report"})


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="TOML configuration file (or GATEWAY_CONFIG)")
    p.add_argument("--listen-host")
    p.add_argument("--listen-port", type=int)
    p.add_argument("--http-host")
    p.add_argument("--http-port", type=int)
    p.add_argument("--carrier-host")
    p.add_argument("--carrier-port", type=int)
    p.add_argument("--database-url")
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for flag, path in (
        ("listen_host", ("listen", "host")), ("listen_port", ("listen", "port")),
        ("http_host", ("http", "host")), ("http_port", ("http", "port")),
        ("carrier_host", ("carrier", "host")), ("carrier_port", ("carrier", "port")),
        ("database_url", ("database_url",)), ("log_level", ("log_level",)),
    ):
        value = getattr(args, flag, None)
        if value is None:
            continue
        node = out
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return out


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gateway", description="SMPP opt-out compliance gateway")
    sub = p.add_subparsers(dest="command", required=True)
    _common(sub.add_parser("run", help="run the proxy until SIGINT/SIGTERM"))
    check = sub.add_parser("check-config", help="validate and print the effective configuration")
    _common(check)
    check.add_argument("--strict", action="store_true", help="warnings are errors (exit 2), for CI")
    sub.add_parser("hash-password", help="read a password on standard input, print its password_hash line")
    sim = sub.add_parser("simulate-carrier", help="bundled SMSC simulator")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=2776)
    sim.add_argument("--http-port", type=int, default=2780)
    sim.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sim.add_argument("--tls-cert-file", help="with --tls-key-file: SMPP over TLS")
    sim.add_argument("--tls-key-file")
    _admin_parsers(sub)
    return p


def _store_common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--config", metavar="FILE", help="TOML configuration file (or GATEWAY_CONFIG)")
    p.add_argument("--database-url", help="overrides GATEWAY_DATABASE_URL")
    return p


def _block_key_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("number", help="the mobile, E.164 (+14155550123) or national in the default region")
    p.add_argument("--counterpart", help="originating number (scope number), system_id (scope account), "
                   "or system_id/program (scope program)")
    p.add_argument("--scope", choices=SCOPES, help="default: optout.scope from the configuration")


def _actor_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--operator", help="who makes the change, in the audit event (default: the login name)")
    p.add_argument("--reason", help="why, in the audit event")


def _admin_parsers(sub: Any) -> None:
    blocks = sub.add_parser("blocks", help="the block list (CSV in and out)")
    bsub = blocks.add_subparsers(dest="blocks_command", required=True)
    ls = _store_common(bsub.add_parser("list", help="a page of blocks"))
    ls.add_argument("--number", help="only this mobile's blocks")
    ls.add_argument("--limit", type=_positive, default=100)
    ls.add_argument("--offset", type=_not_negative, default=0)
    ls.add_argument("--format", choices=["table", "csv"], default="table")
    add = _store_common(bsub.add_parser("add", help="block a mobile (recorded in the audit log)"))
    _block_key_args(add)
    add.add_argument("--kind", choices=ALL_KINDS, help="default admin (never lifted by START)")
    _actor_args(add)
    rm = _store_common(bsub.add_parser("remove", help="lift a block of any kind"))
    _block_key_args(rm)
    rm.add_argument("--kind", choices=ALL_KINDS, help="lift only a block of this kind")
    _actor_args(rm)
    imp = _store_common(bsub.add_parser("import", help="load a CSV (number,counterpart,scope,kind,source,created_at)"))
    imp.add_argument("file", help="CSV file, or - for stdin")
    imp.add_argument("--partial", action="store_true", help="load the valid rows even if some are invalid")
    imp.add_argument("--dry-run", action="store_true", help="validate only")
    imp.add_argument("--scope", choices=SCOPES, help="for rows without one (default: optout.scope)")
    imp.add_argument("--kind", choices=ALL_KINDS, help="for rows without one (default optout)")
    imp.add_argument("--source", default="import", help="for rows without one (default import)")
    exp = _store_common(bsub.add_parser("export", help="every block as CSV"))
    exp.add_argument("file", nargs="?", default="-", help="output file (default - : stdout)")
    exp.add_argument("--force", action="store_true", help="replace an existing file")
    events = sub.add_parser("events", help="the opt-in/opt-out audit log")
    esub = events.add_subparsers(dest="events_command", required=True)
    ex = _store_common(esub.add_parser("export", help="events with since <= at < until"))
    ex.add_argument("--since", help="ISO 8601 or unix seconds (default: the beginning)")
    ex.add_argument("--until", help="ISO 8601 or unix seconds (default: now)")
    ex.add_argument("--format", choices=["csv", "jsonl"], default="csv")
    ex.add_argument("--number", help="one mobile's whole history (E.164, or national in the default region)")
    ex.add_argument("--output", metavar="FILE", help="default stdout")
    ex.add_argument("--force", action="store_true", help="replace an existing file")
    purge = _store_common(esub.add_parser("purge", help="retention: delete old events"))
    when = purge.add_mutually_exclusive_group()
    when.add_argument("--before", help="ISO 8601 or unix seconds")
    when.add_argument("--older-than-days", type=int,
                      help="default: events_retention_days from the configuration (1826)")
    purge.add_argument("--force", action="store_true",
                       help="purge events younger than events_retention_days too")
    _store_common(sub.add_parser("migrate", help="apply schema migrations to the database"))
    rep = _store_common(sub.add_parser("report", help="compliance summary of a period"))
    rep.add_argument("--since", help="ISO 8601 or unix seconds (default: the beginning)")
    rep.add_argument("--until", help="ISO 8601 or unix seconds (default: now)")
    rep.add_argument("--format", choices=["text", "json"], default="text")
    deact = sub.add_parser("deactivations", help="carrier deactivation files: end numbers' consent epochs")
    dsub = deact.add_subparsers(dest="deactivations_command", required=True)
    dimp = _store_common(dsub.add_parser("import", help="load a CSV (number,deactivated_at)"))
    dimp.add_argument("file", help="CSV file, or - for stdin")
    dimp.add_argument("--partial", action="store_true", help="apply the valid rows even if some are invalid")
    dimp.add_argument("--dry-run", action="store_true", help="validate only")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: must be at least 1")
    return value


def _not_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text}: must not be negative")
    return value


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from gateway import logs

    try:
        if args.command == "simulate-carrier":
            logs.setup(args.log_level)
            from gateway.simulator import serve

            return _run_async(serve(args.host, args.port, args.http_port,
                                    tls_cert_file=args.tls_cert_file, tls_key_file=args.tls_key_file))
        if args.command == "hash-password":
            return _hash_password()
        settings = _load(args)
        if args.command in ADMIN_COMMANDS:
            return _admin(args, settings)
        if args.command == "check-config":
            from gateway.app import check_files
            from gateway.config import config_warnings, effective

            check_files(settings)  # certificates, keys, token file: ConfigError names the one that fails
            from gateway.policy.lint import reply_warnings

            # reply lint only here (the shipped HELP reply names no contact: README "Reply linter")
            warnings = config_warnings(settings) + reply_warnings(settings.optout)
            if args.strict and warnings:
                for line in warnings:
                    print(f"config error: {line}", file=sys.stderr)
                return EXIT_CONFIG
            print(effective(settings))
            for line in warnings:
                print(f"config warning: {line}", file=sys.stderr)
            return 0
        logs.setup(settings.log_level)
        _log_warnings(settings)
        if not settings.accounts:
            raise ConfigError("accounts: no application accounts configured (GATEWAY_ACCOUNTS)")
        from gateway.app import install_uvloop, run

        install_uvloop()
        try:
            return asyncio.run(run(settings))
        except StoreError as exc:  # cannot load the block list: refuse to run without it
            from gateway.store import mask_url

            message = _scrub(str(exc), settings.database_url)
            print(f"store error ({mask_url(settings.database_url)}): {message}", file=sys.stderr)
            return EXIT_STORE
    except ConfigError as exc:
        for line in str(exc).splitlines():
            print(f"config error: {line}", file=sys.stderr)
        return EXIT_CONFIG


def _hash_password() -> int:
    """The password from standard input (a terminal: asked without echo), one trailing newline
    stripped; one line out: the password_hash for an account."""
    from gateway import credentials

    if sys.stdin.isatty():
        import getpass

        password = getpass.getpass("password: ").encode("utf-8")
    else:
        password = credentials.strip_newline(sys.stdin.buffer.read())
    if not 1 <= len(password) <= credentials.MAX_PASSWORD:
        print(f"error: a password is 1 to {credentials.MAX_PASSWORD} bytes (SMPP 3.4); got {len(password)}",
              file=sys.stderr)
        return EXIT_CONFIG
    print(credentials.hash_password(password))
    return 0


def _log_warnings(settings: Any) -> None:
    import logging

    from gateway.config import config_warnings

    for line in config_warnings(settings):
        logging.getLogger("gateway.config").warning("config_warning", extra={"warning": line})


def _admin(args: argparse.Namespace, settings: Any) -> int:
    from gateway.admin import InputError, run
    from gateway.store import mask_url

    try:
        return asyncio.run(run(args, settings))
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except StoreError as exc:
        message = _scrub(str(exc), settings.database_url)
        print(f"store error ({mask_url(settings.database_url)}): {message}", file=sys.stderr)
        return EXIT_STORE
    except BrokenPipeError:
        sys.stderr.close()  # stdout closed early (| head): not an error
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _scrub(message: str, url: str) -> str:
    """The message without the URL's password, as written or percent-decoded."""
    from urllib.parse import unquote

    from gateway.store import url_password

    password = url_password(url)
    for secret in (password, unquote(password or "")):
        if secret:
            message = message.replace(secret, "***")
    return message


def _load(args: argparse.Namespace) -> Any:
    from gateway.config import load_settings

    return load_settings(args.config, **_overrides(args))


def _run_async(coro: Any) -> int:
    try:
        asyncio.run(coro)
    except KeyboardInterrupt:
        pass
    return 0
