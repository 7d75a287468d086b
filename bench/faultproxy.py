"""A fault-injecting TCP proxy on asyncio, modelled on Toxiproxy, for tests and the chaos soak.

    proxy = FaultProxy("127.0.0.1", 5432)   # listens on 127.0.0.1:proxy.port
    await proxy.start()
    proxy.cut()                 # reset every connection (both sides)
    proxy.refuse(True)          # new connections are accepted and reset at once
    proxy.stall(True)           # half-open: connections stay, no byte moves either way
    proxy.delay = 0.2           # each chunk waits this long before it is forwarded
    proxy.bandwidth = 10_000    # bytes per second per direction per connection
    proxy.cut_mid_pdu()         # the next chunk is forwarded in part, then the connection is reset
    proxy.heal()                # all of the above off
    await proxy.stop()          # listener closed (connections refused by the OS), every connection cut

`schedule()` draws a seeded list of faults and `FaultProxy.inject()` applies one for a while,
so a soak (or a test) can replay any run from its seed.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
from dataclasses import dataclass

READ_SIZE = 65536
LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST
KINDS = ("cut", "refuse", "stall", "delay", "throttle", "mid_pdu")


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST, as a crashing peer or a middlebox would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
        except OSError:
            pass
    writer.transport.abort()


class _Link:
    """One proxied connection: the client side and the upstream side."""

    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream = upstream
        self.closed = False

    def cut(self) -> None:
        if not self.closed:
            self.closed = True
            reset(self.client)
            reset(self.upstream)


class FaultProxy:
    """host:port -> target, with faults switched on command. See the module docstring."""

    def __init__(self, target_host: str, target_port: int, *, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self.target = (target_host, target_port)
        self.host = host
        self.port = port
        self.delay = 0.0
        self.bandwidth: float | None = None
        self.refusing = False
        self.accepted = 0  # connections accepted and forwarded
        self.refused = 0  # connections reset by refuse()
        self.faults = 0  # faults switched on (inject, cut, refuse, stall, mid_pdu)
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._mid_pdu: str | None = None  # "up", "down" or "any": armed
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Listen (again: on the same port once it has one)."""
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Close the listener and cut every connection: new ones are refused by the OS."""
        if self._server is not None:
            self._server.close()
        self.cut(count=False)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def aclose(self) -> None:
        """stop(), heal, and wait for every connection task to end."""
        self.heal()
        await self.stop()
        tasks = set(self._tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=2.0)  # cut: they end by themselves
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    @property
    def connections(self) -> int:
        return len(self._links)

    def upstream_ports(self) -> set[int]:
        """The local ports of our connections to the target (what the target sees as peers)."""
        ports = set()
        for link in self._links:
            name = link.upstream.get_extra_info("sockname")
            if name:
                ports.add(int(name[1]))
        return ports

    # --- faults ---------------------------------------------------------------------------

    def cut(self, *, count: bool = True) -> int:
        """Reset every open connection; returns how many (a fault when any, and `count`)."""
        links = list(self._links)
        for link in links:
            link.cut()
        self._links.clear()
        if links and count:
            self.faults += 1
        return len(links)

    def refuse(self, on: bool = True) -> None:
        """On: every new connection is reset as soon as it is accepted (open ones stay)."""
        if on and not self.refusing:
            self.faults += 1
        self.refusing = on

    def stall(self, on: bool = True) -> None:
        """On: no byte is read or forwarded either way; connections stay open (half-open)."""
        if on and self._flowing.is_set():
            self.faults += 1
            self._flowing.clear()
        elif not on:
            self._flowing.set()

    @property
    def stalled(self) -> bool:
        return not self._flowing.is_set()

    def cut_mid_pdu(self, direction: str = "any") -> None:
        """Arm: the next chunk going `direction` ("up": to the target, "down", or "any") is
        forwarded only in part (so a PDU is split), then that connection is reset."""
        if direction not in ("up", "down", "any"):
            raise ValueError(f"direction must be up, down or any: {direction!r}")
        self.faults += 1
        self._mid_pdu = direction

    def heal(self) -> None:
        """Every fault off; connections that are still open carry on."""
        self.refusing = False
        self.delay = 0.0
        self.bandwidth = None
        self._mid_pdu = None
        self._flowing.set()

    async def inject(self, kind: str, hold: float, *, delay: float = 0.5,
                     bandwidth: float = 2000.0) -> None:
        """One fault of `kind` (see KINDS) for `hold` seconds, then healed. `cut` and
        `mid_pdu` are instants (mid_pdu waits up to `hold` for a chunk to split)."""
        if kind == "cut":
            if not self.cut():
                self.faults += 1  # counted even with nothing open
            return
        if kind == "refuse":
            self.refuse(True)
            self.cut(count=False)
        elif kind == "stall":
            self.stall(True)
        elif kind == "delay":
            self.faults += 1
            self.delay = delay
        elif kind == "throttle":
            self.faults += 1
            self.bandwidth = bandwidth
        elif kind == "mid_pdu":
            self.cut_mid_pdu()
        else:
            raise ValueError(f"unknown fault {kind!r}; one of {', '.join(KINDS)}")
        try:
            await asyncio.sleep(hold)
        finally:
            if kind == "refuse":
                self.refuse(False)
            elif kind == "stall":
                self.stall(False)
            elif kind == "delay":
                self.delay = 0.0
            elif kind == "throttle":
                self.bandwidth = None
            elif kind == "mid_pdu":
                self._mid_pdu = None

    # --- forwarding -------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._serve_one(reader, writer)
        finally:
            self._tasks.discard(task)

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            self.refused += 1
            reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(*self.target), 5.0)
        except (OSError, TimeoutError):
            reset(writer)
            return
        link = _Link(writer, up_writer)
        if self.refusing:  # switched on while we connected
            link.cut()
            return
        self.accepted += 1
        self._links.add(link)
        try:
            await asyncio.gather(self._pipe(link, reader, up_writer, "up"),
                                 self._pipe(link, up_reader, writer, "down"))
        finally:
            self._links.discard(link)
            link.cut()

    async def _pipe(self, link: _Link, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter, direction: str) -> None:
        try:
            while not link.closed:
                await self._flowing.wait()
                data = await reader.read(READ_SIZE)
                if not data:
                    break
                await self._flowing.wait()  # a stall that began while we read holds the chunk
                if self.delay > 0:
                    await asyncio.sleep(self.delay)
                if self.bandwidth:
                    await asyncio.sleep(len(data) / self.bandwidth)
                if link.closed:
                    break
                armed = self._mid_pdu
                if armed is not None and armed in (direction, "any") and len(data) >= 2:
                    self._mid_pdu = None
                    writer.write(data[: min(len(data) - 1, len(data) // 2 + 1)])
                    link.cut()
                    break
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            link.cut()


@dataclass(frozen=True, slots=True)
class Fault:
    """One scheduled fault: at `at` seconds from the start, `kind` on `target` for `hold` s."""

    at: float
    kind: str
    target: str
    hold: float


def schedule(seed: int, duration: float, kinds: dict[str, tuple[float, float, float]],
             targets: dict[str, list[str]], mean_interval: float, start: float = 0.0) -> list[Fault]:
    """A reproducible fault plan: exponential gaps of `mean_interval`, kind by weight.

    kinds: name -> (weight, shortest hold, longest hold); targets: name -> where it can strike.
    The same arguments always give the same plan."""
    rng = random.Random(seed)
    names = sorted(kinds)
    weights = [kinds[name][0] for name in names]
    plan: list[Fault] = []
    at = start + rng.expovariate(1 / mean_interval)
    while at < duration:
        kind = rng.choices(names, weights)[0]
        _, low, high = kinds[kind]
        plan.append(Fault(round(at, 3), kind, rng.choice(targets[kind]), round(rng.uniform(low, high), 3)))
        at += rng.expovariate(1 / mean_interval)
    return plan
