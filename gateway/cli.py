"""Command line: arguments and exit codes only."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from gateway.errors import ConfigError

EXIT_CONFIG = 2


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
    _common(sub.add_parser("check-config", help="validate and print the effective configuration"))
    sim = sub.add_parser("simulate-carrier", help="bundled SMSC simulator")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=2776)
    sim.add_argument("--http-port", type=int, default=2780)
    sim.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from gateway import logs

    try:
        if args.command == "simulate-carrier":
            logs.setup(args.log_level)
            from gateway.simulator import serve

            return _run_async(serve(args.host, args.port, args.http_port))
        settings = _load(args)
        if args.command == "check-config":
            from gateway.config import effective

            print(effective(settings))
            return 0
        logs.setup(settings.log_level)
        if not settings.accounts:
            raise ConfigError("accounts: no application accounts configured (GATEWAY_ACCOUNTS)")
        from gateway.app import install_uvloop, run

        install_uvloop()
        return asyncio.run(run(settings))
    except ConfigError as exc:
        for line in str(exc).splitlines():
            print(f"config error: {line}", file=sys.stderr)
        return EXIT_CONFIG


def _load(args: argparse.Namespace) -> Any:
    from gateway.config import load_settings

    return load_settings(args.config, **_overrides(args))


def _run_async(coro: Any) -> int:
    try:
        asyncio.run(coro)
    except KeyboardInterrupt:
        pass
    return 0
