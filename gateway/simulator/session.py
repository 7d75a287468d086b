"""One ESME connection to the simulated SMSC: framing, bind state, requests it sends and awaits.

The session answers binds, enquire_link, unbind and unknown commands itself and hands
message submissions to its owner (the `Simulator`). Peer violations become a generic_nack
(malformed body) or a closed socket (impossible command_length); no exception leaves `run()`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from gateway.errors import FramingError, MalformedPduError
from gateway.smpp import status as st
from gateway.smpp.fields import (
    bind_resp_body,
    parse_bind,
)
from gateway.smpp.pdu import (
    BIND_COMMANDS,
    BIND_RECEIVER,
    BIND_TRANSCEIVER,
    BIND_TRANSMITTER,
    CANCEL_SM,
    DATA_SM,
    DELIVER_SM_RESP,
    ENQUIRE_LINK,
    GENERIC_NACK,
    MAX_SEQUENCE,
    QUERY_SM,
    REPLACE_SM,
    SUBMIT_MULTI,
    SUBMIT_SM,
    UNBIND,
    UNBIND_RESP,
    Framer,
    Pdu,
    command_name,
    encode,
    generic_nack,
    response_for,
)

log = logging.getLogger(__name__)

MESSAGE_COMMANDS = frozenset({SUBMIT_SM, DATA_SM, SUBMIT_MULTI, QUERY_SM, CANCEL_SM, REPLACE_SM})
RECEIVER_BINDS = frozenset({BIND_RECEIVER, BIND_TRANSCEIVER})
TRANSMITTER_BINDS = frozenset({BIND_TRANSMITTER, BIND_TRANSCEIVER})
READ_SIZE = 65536
DRAIN_TIMEOUT = 10.0
CLOSE_TIMEOUT = 2.0


class SimulatorError(Exception):
    """A simulator operation could not be carried out."""


class NoReceiverError(SimulatorError):
    """No receiver or transceiver session is bound to take a deliver_sm."""


class SessionClosedError(SimulatorError):
    """The session closed before answering our request."""


class ResponseTimeoutError(SimulatorError, TimeoutError):
    """The ESME did not answer our deliver_sm within the timeout."""


class SessionOwner(Protocol):
    """What a session needs from the simulator that accepted it."""

    def bind_status(self, system_id: str, password: str) -> int: ...

    @property
    def smsc_system_id(self) -> str: ...

    def record_received(self, pdu: Pdu) -> None: ...

    def record_result(self, message_raw: bytes, status: int) -> None: ...

    def handle_message(self, session: SmscSession, pdu: Pdu) -> None: ...

    def session_changed(self, session: SmscSession) -> None: ...


class SmscSession:
    """The SMSC side of one TCP connection."""

    def __init__(
        self, owner: SessionOwner, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.owner = owner
        self.reader = reader
        self.writer = writer
        self.peer = str(writer.get_extra_info("peername"))
        self.framer = Framer()
        self.bind_command: int | None = None
        self.system_id = ""
        self.closed = False
        self._sequence = 0
        self.pending: dict[int, tuple[bytes, asyncio.Future[int] | None]] = {}

    # --- state ---------------------------------------------------------------------

    @property
    def bound(self) -> bool:
        return self.bind_command is not None and not self.closed

    @property
    def can_receive(self) -> bool:
        return self.bind_command in RECEIVER_BINDS and not self.closed

    @property
    def can_transmit(self) -> bool:
        return self.bind_command in TRANSMITTER_BINDS and not self.closed

    def next_sequence(self) -> int:
        self._sequence = self._sequence % MAX_SEQUENCE + 1
        return self._sequence

    # --- output --------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        if not self.closed and not self.writer.is_closing():
            self.writer.write(data)

    def send_request(
        self, command_id: int, body: bytes, waiter: asyncio.Future[int] | None = None
    ) -> tuple[int, bytes]:
        """Send a request; its response status is recorded and, when given, sets `waiter`."""
        if self.closed:
            raise SessionClosedError(f"session {self.peer} is closed")
        sequence = self.next_sequence()
        raw = encode(command_id, 0, sequence, body)
        self.pending[sequence] = (raw, waiter)
        self.send(raw)
        return sequence, raw

    def abort(self) -> None:
        """Drop the connection without unbinding."""
        self.closed = True
        transport = self.writer.transport
        if not transport.is_closing():
            transport.abort()

    # --- input ---------------------------------------------------------------------

    async def run(self) -> None:
        """Serve until EOF, unbind, a framing error or abort; always closes the socket."""
        try:
            await self._serve()
        except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
            log.debug("session_io_error", extra={"peer": self.peer, "error": repr(exc)})
        except Exception:
            log.exception("session_failed", extra={"peer": self.peer})
        finally:
            await self._close()

    async def _serve(self) -> None:
        while not self.closed:
            data = await self.reader.read(READ_SIZE)
            if not data:
                break
            try:
                pdus = self.framer.feed(data)
            except FramingError as exc:
                for pdu in getattr(exc, "pdus", []):
                    self.handle(pdu)
                sequence = getattr(exc, "sequence_number", 0)
                self.send(generic_nack(st.ESME_RINVCMDLEN, sequence))
                log.warning("framing_error", extra={"peer": self.peer, "error": str(exc)})
                break
            for pdu in pdus:
                if self.closed:
                    break
                self.handle(pdu)
            async with asyncio.timeout(DRAIN_TIMEOUT):
                await self.writer.drain()

    async def _close(self) -> None:
        self.closed = True
        for _, waiter in self.pending.values():
            if waiter is not None and not waiter.done():
                waiter.set_exception(SessionClosedError(f"session {self.peer} closed"))
        self.pending.clear()
        self.owner.session_changed(self)
        self.writer.close()
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self.writer.wait_closed()
        except (OSError, TimeoutError):
            self.writer.transport.abort()
        except asyncio.CancelledError:
            self.writer.transport.abort()
            raise

    def handle(self, pdu: Pdu) -> None:
        """One received PDU; a malformed body gets a generic_nack, never an exception."""
        try:
            self.owner.record_received(pdu)
            if pdu.is_response:
                self._on_response(pdu)
            else:
                self._on_request(pdu)
        except MalformedPduError as exc:
            log.debug("malformed_pdu", extra={"peer": self.peer, "error": str(exc)})
            self.send(generic_nack(exc.command_status, pdu.sequence_number))
        except Exception:
            log.exception("pdu_failed", extra={"peer": self.peer, "command": repr(pdu)})
            if not pdu.is_response:
                self.send(generic_nack(st.ESME_RSYSERR, pdu.sequence_number))

    def _on_request(self, pdu: Pdu) -> None:
        command_id = pdu.command_id
        if command_id in BIND_COMMANDS:
            self._on_bind(pdu)
        elif command_id == ENQUIRE_LINK:
            self.send(response_for(pdu, st.ESME_ROK))
        elif command_id == UNBIND:
            self.send(response_for(pdu, st.ESME_ROK))
            self.closed = True
            self.owner.session_changed(self)
        elif command_id in MESSAGE_COMMANDS:
            if self.can_transmit:
                self.owner.handle_message(self, pdu)
            else:
                self.send(response_for(pdu, st.ESME_RINVBNDSTS))
        else:
            self.send(generic_nack(st.ESME_RINVCMDID, pdu.sequence_number))

    def _on_bind(self, pdu: Pdu) -> None:
        if self.bind_command is not None:
            self.send(response_for(pdu, st.ESME_RALYBND))
            return
        request = parse_bind(pdu.raw)
        status = self.owner.bind_status(request.system_id, request.password)
        if status != st.ESME_ROK:
            log.info("bind_rejected", extra={"peer": self.peer, "system_id": request.system_id})
            self.send(response_for(pdu, status))
            self.closed = True
            return
        self.bind_command = pdu.command_id
        self.system_id = request.system_id
        self.send(response_for(pdu, st.ESME_ROK, bind_resp_body(self.owner.smsc_system_id)))
        log.info(
            "bound",
            extra={
                "peer": self.peer,
                "system_id": request.system_id,
                "command": command_name(pdu.command_id),
            },
        )
        self.owner.session_changed(self)

    def _on_response(self, pdu: Pdu) -> None:
        if pdu.command_id in (DELIVER_SM_RESP, GENERIC_NACK):
            entry = self.pending.pop(pdu.sequence_number, None)
            if entry is None:
                log.debug("unexpected_response", extra={"peer": self.peer, "command": repr(pdu)})
                return
            raw, waiter = entry
            self.owner.record_result(raw, pdu.command_status)
            if waiter is not None and not waiter.done():
                waiter.set_result(pdu.command_status)
        elif pdu.command_id == UNBIND_RESP:
            self.closed = True
        # enquire_link_resp and anything else unsolicited: nothing to do
