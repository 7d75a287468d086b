"""The console script as operators use it: check-config exit codes, run + SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from gateway.simulator import Simulator
from gateway.smpp import pdu as P
from tests.integration.client import RawClient


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(extra)
    return env


async def _gateway(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_check_config_masks_secrets() -> None:
    accounts = json.dumps([{"system_id": "acme", "password": "s3cret"}])
    code, out, _ = await _gateway(
        "check-config", env=_env(GATEWAY_ACCOUNTS=accounts, GATEWAY_CARRIER__PASSWORD="carrpw",
                                 GATEWAY_DATABASE_URL="postgresql://u:dbpass@db:5432/x"))
    assert code == 0
    config = json.loads(out)
    assert config["accounts"][0]["system_id"] == "acme"
    assert "s3cret" not in out and "carrpw" not in out and "dbpass" not in out


async def test_check_config_reports_each_problem(tmp_path: Path) -> None:
    toml = tmp_path / "gw.toml"
    toml.write_text('[listen]\nport = 99999\n[carrier]\nsessions = 0\n')
    code, _, err = await _gateway("check-config", "--config", str(toml), env=_env())
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("config error:")]
    assert any("listen.port" in line for line in lines)
    assert any("carrier.sessions" in line for line in lines)


async def test_flags_beat_env_beat_toml(tmp_path: Path) -> None:
    toml = tmp_path / "gw.toml"
    toml.write_text('[listen]\nport = 3001\nhost = "0.0.0.0"\n[http]\nport = 3002\n')
    env = _env(GATEWAY_LISTEN__PORT="3003", GATEWAY_CONFIG=str(toml))
    code, out, _ = await _gateway("check-config", "--http-port", "3004", env=env)
    config = json.loads(out)
    assert code == 0
    assert config["listen"] == {"enabled": True, "host": "0.0.0.0", "port": 3003}
    assert config["http"]["port"] == 3004


async def test_bad_json_in_env_is_a_config_error() -> None:
    code, _, err = await _gateway("check-config", env=_env(GATEWAY_ACCOUNTS="[not json"))
    assert code == 2 and "config error" in err


async def test_run_and_sigterm_exit_zero(sim: Simulator, tmp_path: Path) -> None:
    env = _env(
        GATEWAY_LISTEN__PORT="0", GATEWAY_HTTP__PORT="0",
        GATEWAY_CARRIER__PORT=str(sim.smpp_port),
        GATEWAY_ACCOUNTS=json.dumps([{"system_id": "acme", "password": "secret"}]),
        GATEWAY_DATABASE_URL=f"sqlite:///{tmp_path}/gw.db",
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "run", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(20):
            while not any('"gateway_started"' in line for line in lines):
                lines.append((await proc.stderr.readline()).decode())
        port = json.loads(lines[-1])["smpp_port"]
        await sim.wait_until(lambda: sim.bound_count >= 1, timeout=20)
        client = await RawClient.connect(port)
        assert (await client.bind()).command_status == 0
        proc.send_signal(signal.SIGTERM)
        unbind = await client.read(lambda p: p.command_id == P.UNBIND, timeout=10)
        client.respond(unbind, body=b"")
        assert await client.closed()
        _, err = await asyncio.wait_for(proc.communicate(), 20)
        log = "".join(lines) + err.decode()
        assert proc.returncode == 0, log[-2000:]
        events = [json.loads(line)["event"] for line in log.splitlines() if line.startswith("{")]
        assert "gateway_stopped" in events
        assert "secret" not in log
        await sim.wait_until(lambda: sim.bound_count == 0, timeout=5)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_run_refuses_unreachable_store_without_leaking_password() -> None:
    env = _env(GATEWAY_ACCOUNTS=json.dumps([{"system_id": "acme", "password": "secret"}]),
               GATEWAY_DATABASE_URL="postgresql://gw:dbpass@127.0.0.1:1/x",
               GATEWAY_LISTEN__PORT="0", GATEWAY_HTTP__PORT="0")
    code, _, err = await _gateway("run", env=env)
    assert code == 1
    assert "store error" in err and "dbpass" not in err


async def test_run_refuses_a_newer_schema(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "future.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO schema_version VALUES (999)")
    conn.close()
    env = _env(GATEWAY_ACCOUNTS=json.dumps([{"system_id": "acme", "password": "secret"}]),
               GATEWAY_DATABASE_URL=f"sqlite:///{db}", GATEWAY_LISTEN__PORT="0", GATEWAY_HTTP__PORT="0")
    code, _, err = await _gateway("run", env=env)
    assert code == 1 and "newer" in err


async def test_check_config_reply_warnings_and_strict(tmp_path: Any) -> None:
    """Reply lint lines are warnings (exit 0); --strict makes them errors (exit 2) for CI."""
    config = tmp_path / "gateway.toml"
    config.write_text('[optout.replies]\nstop = "Acme: got it, thanks. Reply START to rejoin us later."\n')
    env = _env(GATEWAY_CONFIG=str(config))
    code, out, err = await _gateway("check-config", env=env)
    assert code == 0 and out
    assert ("config warning: replies.stop.default: a STOP reply does not say no further messages will be "
            "sent (CTIA 5.1.3)") in err.splitlines()
    code, out, err = await _gateway("check-config", "--strict", env=env)
    assert code == 2 and out == ""
    assert ("config error: replies.stop.default: a STOP reply does not say no further messages will be "
            "sent (CTIA 5.1.3)") in err.splitlines()
