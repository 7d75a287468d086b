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
EXIT_RELOAD = 1  # gateway reload: no running gateway to signal
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
    run = sub.add_parser("run", help="run the proxy until SIGINT/SIGTERM; SIGHUP reloads the configuration")
    _common(run)
    run.add_argument("--pid-file", metavar="PATH", help="write the process id here (for `gateway reload`)")
    reload = sub.add_parser("reload", help="send SIGHUP to the gateway in --pid-file: it re-reads its configuration")
    reload.add_argument("--pid-file", metavar="PATH",
                        help="default: $RUNTIME_DIRECTORY/gateway.pid, else ./gateway.pid")
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
    _send_parser(sub)
    _admin_parsers(sub)
    return p


def _send_parser(sub: Any) -> None:
    send = sub.add_parser("send", help="smoke test: bind, send one message, print the status and the receipt")
    send.add_argument("text", metavar="TEXT", help="the message (GSM 03.38 when it fits, else UCS-2; "
                      "long text in concatenated segments)")
    send.add_argument("--host", default="127.0.0.1")
    send.add_argument("--port", type=_port, default=2775)
    send.add_argument("--system-id", required=True)
    pw = send.add_mutually_exclusive_group(required=True)
    pw.add_argument("--password")
    pw.add_argument("--password-file", metavar="FILE", help="the password from a file (one trailing "
                    "newline stripped), - for standard input")
    send.add_argument("--system-type", default="")
    send.add_argument("--from", dest="source", required=True, metavar="ADDR",
                      help="+E.164 (international), digits (TON unknown) or an alphanumeric sender")
    send.add_argument("--to", dest="destination", required=True, metavar="ADDR")
    send.add_argument("--wait-receipt", action="store_true", help="ask for a delivery receipt and wait for it")
    send.add_argument("--timeout", type=_seconds, default=10.0,
                      help="seconds for each network wait, the receipt included (default 10)")
    send.add_argument("--message-id-format", choices=["exact", "hex", "decimal"], default="exact",
                      help="how receipts spell the submit_sm_resp id (as carrier.message_id_format)")
    send.add_argument("--tls", action="store_true", help="SMPP over TLS (the system's trust store)")
    send.add_argument("--tls-ca", metavar="FILE", help="with --tls: trust these CAs instead")
    send.add_argument("--tls-server-name", help="with --tls: the name checked and sent as SNI (default --host)")
    send.add_argument("--tls-cert-file", metavar="FILE", help="with --tls-key-file: a client certificate")
    send.add_argument("--tls-key-file", metavar="FILE")
    send.add_argument("--tls-insecure", action="store_true",
                      help="with --tls: accept any certificate (diagnosis only)")


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


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text}: a port is 1 to 65535")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 < value <= 86400:
        raise argparse.ArgumentTypeError(f"{text}: seconds above 0, at most 86400")
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
        if args.command == "send":
            return _send(args)
        if args.command == "reload":
            return _reload(args.pid_file)
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
        from pathlib import Path

        from gateway.app import install_uvloop, run
        from gateway.reload import ConfigSource

        install_uvloop()
        source = ConfigSource(args.config, _overrides(args))  # SIGHUP reads the file again, flags still win
        pid_file = Path(args.pid_file) if args.pid_file else None
        try:
            return asyncio.run(run(settings, pid_file=pid_file, source=source))
        except StoreError as exc:  # cannot load the block list: refuse to run without it
            from gateway.store import mask_url

            message = _scrub(str(exc), settings.database_url)
            print(f"store error ({mask_url(settings.database_url)}): {message}", file=sys.stderr)
            return EXIT_STORE
    except ConfigError as exc:
        for line in str(exc).splitlines():
            print(f"config error: {line}", file=sys.stderr)
        return EXIT_CONFIG


def _reload(pid_file: str | None) -> int:
    """SIGHUP to the running gateway; what it applied is in its log (`reloaded`, `reload_failed`)."""
    from pathlib import Path

    from gateway import pidfile

    path = Path(pid_file) if pid_file else pidfile.default_path()
    try:
        pid = pidfile.send_reload(path)
    except pidfile.PidFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_RELOAD
    print(f"sent SIGHUP to gateway process {pid}; its log says what was applied (reloaded / reload_failed)")
    return 0


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


def _send(args: argparse.Namespace) -> int:
    """gateway send: arguments to a SendRequest; a failure is one `error:` line and its exit code."""
    from gateway import send

    try:
        request = send.SendRequest(
            host=args.host, port=args.port, system_id=args.system_id, password=_send_password(args),
            source=args.source, destination=args.destination, text=args.text,
            system_type=args.system_type, wait_receipt=args.wait_receipt, timeout=args.timeout,
            tls=_send_tls(args), server_name=args.tls_server_name,
            message_id_format=args.message_id_format)
        return asyncio.run(send.send(request, lambda line: print(line, flush=True)))
    except send.SendError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _send_password(args: argparse.Namespace) -> str:
    from gateway import credentials
    from gateway.send import EXIT_USAGE, SendError

    if args.password is not None:
        return str(args.password)
    try:
        if args.password_file == "-":
            raw = sys.stdin.buffer.read()
        else:
            with open(args.password_file, "rb") as f:
                raw = f.read()
    except OSError as exc:
        raise SendError(f"--password-file {args.password_file}: {exc.strerror or exc}", EXIT_USAGE) from None
    return credentials.strip_newline(raw).decode("latin-1")


def _send_tls(args: argparse.Namespace) -> Any:
    """The client SSLContext for --tls (built as the carrier leg's), or None."""
    from pathlib import Path

    from gateway.send import EXIT_USAGE, SendError
    from gateway.tls import ClientFiles, build_client_context

    tls_only = (args.tls_ca, args.tls_server_name, args.tls_cert_file, args.tls_key_file, args.tls_insecure)
    if not args.tls:
        if any(tls_only):
            raise SendError("the --tls-* options need --tls", EXIT_USAGE)
        return None
    if bool(args.tls_cert_file) != bool(args.tls_key_file):
        raise SendError("--tls-cert-file and --tls-key-file go together", EXIT_USAGE)
    files = ClientFiles(
        ca_file=Path(args.tls_ca) if args.tls_ca else None,
        cert_file=Path(args.tls_cert_file) if args.tls_cert_file else None,
        key_file=Path(args.tls_key_file) if args.tls_key_file else None,
        verify=not args.tls_insecure)
    try:
        return build_client_context(files)
    except ConfigError as exc:  # names the file that did not load
        message = str(exc).replace("carrier.tls_ca_file", "--tls-ca").replace("carrier.tls", "--tls-cert-file")
        raise SendError(message, EXIT_USAGE) from None


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
