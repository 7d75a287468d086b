"""The 'tls' scenario: loadgen -TLS-> gateway -TLS-> sink, beside 'gateway' (plaintext) of the same run.

A throwaway CA (trustme) signs one certificate for localhost; the sink and the gateway's
listener present it, the loadgen and the gateway's carrier leg verify it (hostname too).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.procs import Children, free_port

TARGET_RATIO = 0.6  # TLS throughput at least 0.6 x plaintext (issue 9)


def certificates(workdir: Path) -> tuple[Path, Path, Path]:
    """(CA file, certificate chain, key) for localhost / 127.0.0.1."""
    import trustme

    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    ca_file, cert, key = workdir / "bench-ca.pem", workdir / "bench-tls.crt", workdir / "bench-tls.key"
    ca.cert_pem.write_to_path(str(ca_file))
    cert.write_bytes(b"".join(p.bytes() for p in leaf.cert_chain_pems))
    key.write_bytes(leaf.private_key_pem.bytes())
    return ca_file, cert, key


def run_tls(kids: Children, args: argparse.Namespace, workdir: Path, results: list, notes: list[str]) -> None:  # type: ignore[type-arg]
    from bench import run as R  # imports this module lazily: keep it out of module scope

    ca_file, cert, key = certificates(workdir)
    sink = kids.spawn("sink-tls", [R.PY, "-m", "bench.sink", "--port", "0",
                                   "--tls-cert", str(cert), "--tls-key", str(key)])
    sink_port = int(sink.json_line(timeout=30)["port"])
    tls_port = free_port()
    env = {
        "GATEWAY_LISTEN__ENABLED": "false",
        "GATEWAY_LISTEN_TLS__PORT": str(tls_port),
        "GATEWAY_LISTEN_TLS__CERT_FILE": str(cert),
        "GATEWAY_LISTEN_TLS__KEY_FILE": str(key),
        "GATEWAY_CARRIER__TLS": "true",
        "GATEWAY_CARRIER__TLS_CA_FILE": str(ca_file),
        "GATEWAY_CARRIER__TLS_SERVER_NAME": "localhost",
    }
    gw = R.start_gateway(kids, args, sink_port, workdir / "bench-tls.db", name="gateway-tls", env_extra=env)
    try:
        results.append(R.run_load(kids, args, "tls", tls_port, sink, gw.child, extra=["--tls-ca", str(ca_file)]))
    finally:
        notes.append(R.stop_gateway(gw))
        sink.stop(timeout=5.0)


def verdict(by: dict) -> list[str]:  # type: ignore[type-arg]
    if "tls" not in by:
        return []
    tls = by["tls"].load
    line = f"tls (both legs): {tls['rate']:,.0f} msg/s, p99 {tls['p99_ms']:.3f} ms"
    if "gateway" not in by:
        return [line + " (run 'gateway' in the same run for the plaintext figure)"]
    plain = by["gateway"].load
    ratio = tls["rate"] / plain["rate"]
    ok = ratio >= TARGET_RATIO
    return [(f"{line} vs plaintext {plain['rate']:,.0f} msg/s, p99 {plain['p99_ms']:.3f} ms: {ratio:.0%} of "
             f"plaintext, target ≥ {TARGET_RATIO:.0%}: {'PASS' if ok else 'FAIL'}")]
