"""Real sockets on 127.0.0.1 port 0: the carrier simulator, a gateway, application clients."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from gateway.app import Gateway
from gateway.reload import ConfigSource
from gateway.simulator import Simulator
from tests.pg import drop_schema, pg_dsn_or_skip, unique_schema

ACCOUNTS = [
    {"system_id": "acme", "password": "secret", "numbers": ["+14155550100"]},
    {"system_id": "other", "password": "pw2"},
]


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator(host="127.0.0.1", smpp_port=0, http_port=0)
    await simulator.start()
    yield simulator
    await simulator.stop()


GatewayFactory = Callable[..., Awaitable[Gateway]]


@pytest.fixture
async def make_gateway(sim: Simulator, tmp_path: Any) -> AsyncIterator[GatewayFactory]:
    started: list[Gateway] = []

    async def factory(wait_bound: bool = True, config: Any = None, **overrides: Any) -> Gateway:
        """A started gateway; overrides win as command-line flags do. config: a TOML file that
        brings the accounts (and whatever overrides leave to it), read again by every reload."""
        base: dict[str, Any] = {
            "listen": {"host": "127.0.0.1", "port": 0},
            "http": {"host": "127.0.0.1", "port": 0},
            "carrier": {"host": "127.0.0.1", "port": sim.smpp_port, "system_id": "gw",
                        "password": "gwpw", "reconnect_min_interval": 0.05,
                        "reconnect_max_interval": 0.2},
            "accounts": ACCOUNTS,
            "database_url": f"sqlite:///{tmp_path}/gateway.db",
            "drain_timeout": 1.0,
        }
        for key, value in overrides.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                base[key] = {**base[key], **value}
            else:
                base[key] = value
        if config is not None:
            del base["accounts"]
        source = ConfigSource(None if config is None else str(config), base)
        gateway = Gateway(source.load(), source=source)
        await gateway.start()
        started.append(gateway)
        if wait_bound:
            await asyncio.wait_for(gateway.proxy.carrier_ready.wait(), 5)
        return gateway

    yield factory
    for gateway in started:
        if not gateway.stopped.is_set():
            await gateway.stop()


@pytest.fixture
async def gateway(make_gateway: GatewayFactory) -> Gateway:
    return await make_gateway()



@pytest.fixture(params=["sqlite", "postgres"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[str]:
    """A GATEWAY_DATABASE_URL on each backend: a SQLite file, then a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/gateway.db"
        return
    dsn = await pg_dsn_or_skip()
    schema = unique_schema("gw")
    yield f"{dsn}?schema={schema}"
    await drop_schema(dsn, schema)


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A GATEWAY_DATABASE_URL on its own PostgreSQL schema (skips when the server is unreachable)."""
    dsn = await pg_dsn_or_skip()
    schema = unique_schema("gw2")
    yield f"{dsn}?schema={schema}"
    await drop_schema(dsn, schema)
