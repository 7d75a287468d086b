"""`python -m gateway.simulator [--host H] [--port 2776] [--http-port 2780]`."""

from __future__ import annotations

import argparse
import asyncio
import logging

from gateway.simulator.serve import serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gateway simulate-carrier")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2776)
    parser.add_argument("--http-port", type=int, default=2780)
    parser.add_argument("--system-id", default=None, help="require this system_id to bind")
    parser.add_argument("--password", default=None)
    parser.add_argument("--receipt-delay", type=float, default=0.0)
    parser.add_argument("--tls-cert-file", help="with --tls-key-file: SMPP over TLS")
    parser.add_argument("--tls-key-file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        asyncio.run(
            serve(
                args.host,
                args.port,
                args.http_port,
                system_id=args.system_id,
                password=args.password,
                receipt_delay=args.receipt_delay,
                tls_cert_file=args.tls_cert_file,
                tls_key_file=args.tls_key_file,
            )
        )
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
