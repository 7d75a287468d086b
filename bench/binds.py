"""Bind cost with password hashes: `python -m bench.binds` (not part of `make bench`'s default run).

In one process, a gateway (real sockets, the bundled simulator as carrier) and raw clients:
  - bind latency for a plaintext password, a password_hash the first time (one scrypt at the
    default cost) and again (the remembered verification);
  - a flood of wrong-password binds (every one a scrypt, from an exempt address so the lockout
    does not stop it) while a bound session sends enquire_link one at a time: the enquire_link
    round trip shows whether the event loop stalls, and the flood's rate what scrypt allows.
"""

from __future__ import annotations

import asyncio
import statistics
import struct
import tempfile
import time
from typing import Any

from bench import wire as W
from gateway import credentials
from gateway.app import Gateway
from gateway.config import load_settings
from gateway.simulator import Simulator

RESP = struct.Struct("!IIII")


async def _request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes) -> int:
    writer.write(raw)
    header = await reader.readexactly(16)
    length, _, status, _ = RESP.unpack(header)
    await reader.readexactly(length - 16)
    return int(status)


async def _bind_ms(port: int, system_id: str, password: str) -> tuple[float, int]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.perf_counter()
    status = await _request(reader, writer, W.bind(W.BIND_TRANSCEIVER, system_id, password))
    elapsed = (time.perf_counter() - started) * 1000
    writer.close()
    return elapsed, status


async def _flood(port: int, stop: asyncio.Event, counter: list[int]) -> None:
    while not stop.is_set():  # a new guess each time: identical ones would share one scrypt
        _, status = await _bind_ms(port, "hashed", f"w{counter[0] % 10_000_000}")
        assert status == 0x0E, status
        counter[0] += 1


async def main() -> None:
    sim = Simulator(host="127.0.0.1", smpp_port=0, http_port=0)
    await sim.start()
    hashed = str(credentials.hash_password(b"rightpw"))  # default cost, as `gateway hash-password`
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(None, listen={"host": "127.0.0.1", "port": 0}, http={"host": "127.0.0.1", "port": 0}, carrier={"host": "127.0.0.1", "port": sim.smpp_port, "system_id": "gw", "password": "gwpw"}, accounts=[{"system_id": "plain", "password": "rightpw"},
                         {"system_id": "hashed", "password_hash": hashed}], esme={"lockout_exempt": ["127.0.0.0/8"]}, database_url=f"sqlite:///{tmp}/gw.db")
        gateway = Gateway(settings)
        await gateway.start()
        port = gateway.smpp_port
        plain = [(await _bind_ms(port, "plain", "rightpw"))[0] for _ in range(20)]
        first, _ = await _bind_ms(port, "hashed", "rightpw")
        cached = [(await _bind_ms(port, "hashed", "rightpw"))[0] for _ in range(20)]
        print(f"bind, plaintext password:          p50 {statistics.median(plain):6.2f} ms")
        print(f"bind, password_hash, first time:       {first:6.2f} ms (one scrypt n=2^14 r=8 p=1)")
        print(f"bind, password_hash, remembered:   p50 {statistics.median(cached):6.2f} ms")
        await _stall(port)
        await gateway.stop()
    await sim.stop()


async def _stall(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert await _request(reader, writer, W.bind(W.BIND_TRANSCEIVER, "plain", "rightpw")) == 0

    async def rtts(seconds: float) -> list[float]:
        out: list[float] = []
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            started = time.perf_counter()
            await _request(reader, writer, W.pdu(W.ENQUIRE_LINK, 0, 7))
            out.append((time.perf_counter() - started) * 1000)
        return out

    idle = await rtts(1.0)
    stop, counter = asyncio.Event(), [0]
    floods = [asyncio.create_task(_flood(port, stop, counter)) for _ in range(16)]
    started = time.perf_counter()
    busy = await rtts(3.0)
    stop.set()
    await asyncio.gather(*floods)
    rate = counter[0] / (time.perf_counter() - started)
    print(f"enquire_link round trip, idle:            p99 {_p99(idle):6.2f} ms")
    print(f"  during 16 concurrent wrong-password binds: p99 {_p99(busy):6.2f} ms, max {max(busy):6.2f} ms; "
          f"{rate:.0f} failed binds/s")
    writer.close()


def _p99(values: list[Any]) -> float:
    return float(sorted(values)[int(len(values) * 0.99)])


if __name__ == "__main__":
    asyncio.run(main())
