"""The fault proxy over real sockets: each fault does what it says, and heals."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from bench.faultproxy import KINDS, FaultProxy, schedule

PDU = (40).to_bytes(4, "big") + bytes(range(36))  # a 40-octet SMPP-shaped frame


class Upstream:
    """An echo server that also keeps what it received, per connection."""

    def __init__(self) -> None:
        self.received: list[bytearray] = []
        self.closed = 0
        self.changed = asyncio.Event()
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got = bytearray()
        self.received.append(got)
        self.changed.set()
        try:
            while data := await reader.read(65536):
                got += data
                self.changed.set()
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            self.closed += 1
            self.changed.set()
            writer.transport.abort()

    async def wait(self, condition: object, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not condition():  # type: ignore[operator]
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
async def pair() -> AsyncIterator[tuple[Upstream, FaultProxy]]:
    upstream = Upstream()
    await upstream.start()
    proxy = FaultProxy("127.0.0.1", upstream.port)
    await proxy.start()
    yield upstream, proxy
    for writer in OPENED:
        writer.close()
    OPENED.clear()
    await proxy.aclose()
    await upstream.stop()


OPENED: list[asyncio.StreamWriter] = []  # closed by the fixture


async def connect(proxy: FaultProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    OPENED.append(writer)
    return reader, writer


async def closed_by_peer(reader: asyncio.StreamReader, timeout: float = 5.0) -> bool:
    """True when the connection ends (EOF or reset) within timeout."""
    try:
        async with asyncio.timeout(timeout):
            while await reader.read(65536):
                pass
    except (ConnectionResetError, BrokenPipeError):
        return True
    return True


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes) -> bytes:
    writer.write(data)
    await writer.drain()
    return await asyncio.wait_for(reader.readexactly(len(data)), 5)


async def test_passes_bytes_both_ways(pair: tuple[Upstream, FaultProxy]) -> None:
    _, proxy = pair
    reader, writer = await connect(proxy)
    assert await echo(reader, writer, PDU) == PDU
    assert proxy.accepted == 1 and proxy.faults == 0
    writer.close()


async def test_refuse_resets_new_connections_and_keeps_open_ones(
        pair: tuple[Upstream, FaultProxy]) -> None:
    upstream, proxy = pair
    old_reader, old_writer = await connect(proxy)
    await echo(old_reader, old_writer, PDU)
    proxy.refuse(True)
    reader, _ = await connect(proxy)
    assert await closed_by_peer(reader)
    assert proxy.refused == 1 and len(upstream.received) == 1  # never reached the target
    assert await echo(old_reader, old_writer, PDU) == PDU
    proxy.refuse(False)
    reader, writer = await connect(proxy)
    assert await echo(reader, writer, PDU) == PDU
    old_writer.close()
    writer.close()


async def test_cut_resets_both_sides_of_every_connection(pair: tuple[Upstream, FaultProxy]) -> None:
    upstream, proxy = pair
    clients = [await connect(proxy) for _ in range(3)]
    for reader, writer in clients:
        await echo(reader, writer, PDU)
    assert proxy.cut() == 3
    for reader, _ in clients:
        assert await closed_by_peer(reader)
    await upstream.wait(lambda: upstream.closed == 3)
    assert proxy.connections == 0
    reader, writer = await connect(proxy)  # the listener stays
    assert await echo(reader, writer, PDU) == PDU
    writer.close()


async def test_stall_moves_no_byte_either_way_and_keeps_the_connection(
        pair: tuple[Upstream, FaultProxy]) -> None:
    upstream, proxy = pair
    reader, writer = await connect(proxy)
    await echo(reader, writer, PDU)
    proxy.stall(True)
    writer.write(PDU)
    await writer.drain()
    with pytest.raises(TimeoutError):
        await upstream.wait(lambda: len(upstream.received[0]) > len(PDU), timeout=0.3)
    assert proxy.connections == 1 and upstream.closed == 0
    proxy.stall(False)
    assert await asyncio.wait_for(reader.readexactly(len(PDU)), 5) == PDU
    writer.close()


async def test_stall_holds_the_answer_of_the_target_too(pair: tuple[Upstream, FaultProxy]) -> None:
    upstream, proxy = pair
    reader, writer = await connect(proxy)
    await echo(reader, writer, PDU)
    writer.write(PDU)
    await writer.drain()
    await upstream.wait(lambda: len(upstream.received[0]) == 2 * len(PDU))
    proxy.stall(True)  # the echo may be on its way back: it must not arrive
    stalled_at = proxy.faults
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.readexactly(len(PDU)), 0.3)
    proxy.stall(False)
    assert stalled_at == 1
    writer.close()


async def test_delay_holds_each_chunk(pair: tuple[Upstream, FaultProxy]) -> None:
    _, proxy = pair
    reader, writer = await connect(proxy)
    proxy.delay = 0.2
    started = time.monotonic()
    assert await echo(reader, writer, PDU) == PDU
    assert time.monotonic() - started >= 0.4  # once each way: a lower bound only
    writer.close()


async def test_throttle_limits_bandwidth(pair: tuple[Upstream, FaultProxy]) -> None:
    _, proxy = pair
    reader, writer = await connect(proxy)
    proxy.bandwidth = 20_000.0
    data = bytes(10_000)
    started = time.monotonic()
    assert await echo(reader, writer, data) == data
    assert time.monotonic() - started >= 2 * len(data) / proxy.bandwidth  # a lower bound only
    writer.close()


@pytest.mark.parametrize("direction", ["up", "down"])
async def test_cut_mid_pdu_splits_a_frame_then_resets(
        pair: tuple[Upstream, FaultProxy], direction: str) -> None:
    upstream, proxy = pair
    reader, writer = await connect(proxy)
    await echo(reader, writer, PDU)
    proxy.cut_mid_pdu(direction)
    writer.write(PDU)
    await writer.drain()
    got = bytearray()
    try:
        async with asyncio.timeout(5):
            while data := await reader.read(65536):
                got += data
    except ConnectionResetError:
        pass
    await upstream.wait(lambda: upstream.closed == 1)
    if direction == "up":
        assert 0 < len(upstream.received[0]) - len(PDU) < len(PDU) and not got
    else:
        assert len(upstream.received[0]) == 2 * len(PDU) and 0 < len(got) < len(PDU)
    reader, writer = await connect(proxy)  # disarmed after one cut
    assert await echo(reader, writer, PDU) == PDU
    writer.close()


async def test_stop_refuses_at_the_socket_and_start_takes_the_same_port(
        pair: tuple[Upstream, FaultProxy]) -> None:
    _, proxy = pair
    port = proxy.port
    await proxy.stop()
    with pytest.raises(OSError):
        await connect(proxy)
    await proxy.start()
    assert proxy.port == port
    reader, writer = await connect(proxy)
    assert await echo(reader, writer, PDU) == PDU
    writer.close()


@pytest.mark.parametrize("kind", KINDS)
async def test_inject_switches_each_fault_on_then_heals(
        pair: tuple[Upstream, FaultProxy], kind: str) -> None:
    _, proxy = pair
    first_reader, first_writer = await connect(proxy)
    await echo(first_reader, first_writer, PDU)
    task = asyncio.create_task(proxy.inject(kind, 0.2))
    await asyncio.sleep(0)
    on = {"cut": proxy.connections == 0, "refuse": proxy.refusing, "stall": proxy.stalled,
          "delay": proxy.delay > 0, "throttle": proxy.bandwidth is not None,
          "mid_pdu": proxy._mid_pdu is not None}
    assert on[kind]
    await task
    assert proxy.faults == 1
    assert not (proxy.refusing or proxy.stalled or proxy.delay or proxy.bandwidth or proxy._mid_pdu)
    reader, writer = await connect(proxy)
    assert await echo(reader, writer, PDU) == PDU
    writer.close()
    first_writer.close()


def test_schedule_is_reproducible_from_its_seed() -> None:
    kinds = {"cut": (2.0, 0.0, 0.0), "stall": (1.0, 1.0, 3.0)}
    targets = {"cut": ["a", "b"], "stall": ["a"]}
    plan = schedule(7, 600, kinds, targets, mean_interval=10)
    assert plan == schedule(7, 600, kinds, targets, mean_interval=10)
    assert plan != schedule(8, 600, kinds, targets, mean_interval=10)
    assert {f.kind for f in plan} == {"cut", "stall"} and all(0 < f.at < 600 for f in plan)
    assert all(1 <= f.hold <= 3 for f in plan if f.kind == "stall")
    assert [f.at for f in plan] == sorted(f.at for f in plan)
