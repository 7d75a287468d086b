"""Fail-closed configuration through the real CLI: typos, database URLs, where the database lives."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from pathlib import Path

import pytest

from gateway.store import migrate
from tests.integration.conftest import GatewayFactory
from tests.integration.pki import Pki
from tests.pg import drop_schema, pg_dsn_or_skip, unique_schema

ROOT = Path(__file__).resolve().parents[2]
ACCOUNTS = json.dumps([{"system_id": "acme", "password": "secret"}])


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("GATEWAY_") and k != "STATE_DIRECTORY"}
    env.update(extra)
    return env


async def _gateway(*args: str, env: dict[str, str], cwd: Path | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", *args, env=env, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _problems(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("config error:")]


@pytest.mark.parametrize(
    ("env", "toml", "where"),
    [
        ({"GATEWAY_ACCOUNTS": '[{"system_id":"a","password":"p","max_bind":1,"windw":5}]'}, "", "accounts.0.windw"),
        ({"GATEWAY_ACCOUNTS": '[{"system_id":"a","password":"p","number":["+14155550100"]}]'}, "",
         "accounts.0.number"),
        ({"GATEWAY_CARRIER__PASWORD": "x"}, "", "carrier.pasword"),
        ({}, '[carrier]\npasword = "x"\n', "carrier.pasword"),
        ({}, '[esme]\nmax_pdus = 1000\n', "esme.max_pdus"),
        ({}, '[routing]\nunbound_statu = 0x58\n', "routing.unbound_statu"),
        ({}, '[listen]\nprot = 1\n[http]\nhots = "x"\n', "listen.prot"),
        ({"GATEWAY_DATABASE_URLL": "sqlite:///x.db"}, "", "GATEWAY_DATABASE_URLL"),
        ({"GATEWAY_LOG_LEVEL__X": "1"}, "", "GATEWAY_LOG_LEVEL__X"),
        ({"GATEWAY_DATABASE_URL": "postgresql://u@db/x?schema=a,public"}, "", "schema 'a,public'"),
        ({"GATEWAY_DATABASE_URL": "postgresql://u@db/x?schema=a&schema=public"}, "", "schema is given 2 times"),
    ],
)
async def test_check_config_rejects_typos(env: dict[str, str], toml: str, where: str, tmp_path: Path) -> None:
    args = ["check-config"]
    if toml:
        (tmp_path / "gw.toml").write_text(toml)
        args += ["--config", str(tmp_path / "gw.toml")]
    code, out, err = await _gateway(*args, env=_env(**env))
    assert code == 2, out
    assert any(where in line for line in _problems(err)), err


async def test_project_env_is_not_reported(tmp_path: Path) -> None:
    (tmp_path / "gw.toml").write_text("")
    env = _env(GATEWAY_TEST_DATABASE_URL="postgresql://x@y/z", GATEWAY_CONFIG=str(tmp_path / "gw.toml"),
               GATEWAY_OPTOUT__SCOPE="account", GATEWAY_CARRIER__PASSWORD="pw")
    code, out, err = await _gateway("check-config", env=env)
    assert code == 0, err
    assert json.loads(out)["optout"]["scope"] == "account"


SECRET_URLS = [
    "postgresql://gw:Tr0ub/dor@127.0.0.1:5432/x",
    "postgresql://gw:Tr0ub#dor@127.0.0.1:5432/x",
    "postgresql://gw:Tr0ub?dor@127.0.0.1:5432/x",
    "postgresql://gw:Tr0ubdor@127.0.0.1:99999/x",
    "postgresql://gw:Tr0ubdor@/x?host=127.0.0.1&port=99999",
]


@pytest.mark.parametrize("url", SECRET_URLS)
@pytest.mark.parametrize("command", [["check-config"], ["blocks", "list"], ["run"]])
async def test_bad_database_url_is_one_masked_line(url: str, command: list[str]) -> None:
    code, out, err = await _gateway(*command, env=_env(GATEWAY_DATABASE_URL=url, GATEWAY_ACCOUNTS=ACCOUNTS,
                                                        GATEWAY_LISTEN__PORT="0", GATEWAY_HTTP__PORT="0"))
    assert code == 2
    assert "Tr0ub" not in out + err and "dor" not in out + err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and _problems(err), err


async def test_connect_error_scrubs_the_percent_encoded_password() -> None:
    url = "postgresql://gw:Tr0ub%2Fdor@127.0.0.1:1/x"
    for command in (["blocks", "list"], ["run"]):
        code, _, err = await _gateway(*command, env=_env(GATEWAY_DATABASE_URL=url, GATEWAY_ACCOUNTS=ACCOUNTS,
                                                          GATEWAY_LISTEN__PORT="0", GATEWAY_HTTP__PORT="0"))
        assert code == 1 and err.startswith("store error"), err
        assert "Tr0ub" not in err and "Traceback" not in err


async def test_database_must_exist_refuses_a_missing_file(tmp_path: Path) -> None:
    (tmp_path / "gw.toml").write_text('database_must_exist = true\ndatabase_url = "sqlite:///gateway.db"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = _env(GATEWAY_ACCOUNTS=ACCOUNTS, GATEWAY_LISTEN__PORT="0", GATEWAY_HTTP__PORT="0")
    code, _, err = await _gateway("run", "--config", str(tmp_path / "gw.toml"), env=env, cwd=elsewhere)
    assert code == 1, err
    assert len(err.strip().splitlines()) == 1 and str(elsewhere / "gateway.db") in err, err
    assert not (elsewhere / "gateway.db").exists()


async def test_database_must_exist_refuses_an_empty_postgres_schema() -> None:
    dsn = await pg_dsn_or_skip()
    schema = unique_schema("mustexist")  # never created: a mistyped ?schema= must not start empty
    url = f"{dsn}{'&' if '?' in dsn else '?'}schema={schema}"
    env = _env(GATEWAY_ACCOUNTS=ACCOUNTS, GATEWAY_LISTEN__PORT="0", GATEWAY_HTTP__PORT="0",
               GATEWAY_DATABASE_URL=url, GATEWAY_DATABASE_MUST_EXIST="true")
    try:
        code, _, err = await _gateway("run", env=env)
    finally:
        await drop_schema(dsn, schema)
    assert code == 1 and "no gateway tables" in err, err


async def test_database_must_exist_starts_on_a_migrated_file(make_gateway: GatewayFactory, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/ready.db"
    await migrate(url)
    gateway = await make_gateway(database_url=url, database_must_exist=True)
    assert gateway.store is not None and gateway.ready()


async def test_relative_path_is_resolved_and_logged(
    make_gateway: GatewayFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.INFO, logger="gateway.app"):
        await make_gateway(database_url="sqlite:///relative.db")
    loaded = [r.__dict__ for r in caplog.records if r.getMessage() == "blocks_loaded"]
    assert loaded and loaded[0]["store"] == str(tmp_path / "relative.db")
    assert loaded[0]["blocks"] == 0
    assert (tmp_path / "relative.db").exists()


async def test_state_directory_is_the_default_under_systemd(tmp_path: Path) -> None:
    code, out, err = await _gateway("check-config", env=_env(STATE_DIRECTORY=f"{tmp_path}:/other"))
    assert code == 0, err
    assert json.loads(out)["database_url"] == f"sqlite:///{tmp_path}/gateway.db"
    code, out, _ = await _gateway("check-config", env=_env(STATE_DIRECTORY=str(tmp_path),
                                                           GATEWAY_DATABASE_URL="sqlite:////srv/gw.db"))
    assert json.loads(out)["database_url"] == "sqlite:////srv/gw.db"


async def test_example_toml_is_valid_and_fails_closed(tmp_path: Path) -> None:
    example = str(ROOT / "deploy/gateway.example.toml")
    code, _, err = await _gateway("check-config", "--config", example, env=_env())
    assert code == 2 and "/etc/gateway/tls/" in err  # its certificate files are not on this machine
    pki = Pki(tmp_path)
    files = pki.issue("gw")
    (tmp_path / "token").write_text("scrape-token\n")
    present = _env(
        GATEWAY_LISTEN_TLS__CERT_FILE=str(files.cert), GATEWAY_LISTEN_TLS__KEY_FILE=str(files.key),
        GATEWAY_LISTEN_TLS__CLIENT_CA_FILE=str(pki.ca_file),
        GATEWAY_HTTP__CERT_FILE=str(files.cert), GATEWAY_HTTP__KEY_FILE=str(files.key),
        GATEWAY_HTTP__METRICS_TOKEN_FILE=str(tmp_path / "token"),
        GATEWAY_CARRIER__TLS_CA_FILE=str(pki.ca_file),
        GATEWAY_CARRIER__TLS_CERT_FILE=str(files.cert), GATEWAY_CARRIER__TLS_KEY_FILE=str(files.key))
    code, out, err = await _gateway("check-config", "--config", example, env=present)
    assert code == 0, err
    config = json.loads(out)
    assert config["database_must_exist"] is True
    assert config["carrier"]["tls"] is True and config["carrier"]["tls_verify"] is True
