"""The GatewayError tree; status_for() is the one place exceptions become SMPP statuses."""

from __future__ import annotations

from gateway.smpp import status as st


class GatewayError(Exception):
    """Our own failure; carries the command_status the peer should see."""

    command_status: int = st.ESME_RSYSERR


class ConfigError(GatewayError):
    """Bad configuration; the CLI prints one line per problem and exits 2."""


class PeerProtocolError(GatewayError):
    """The peer broke SMPP: answered with generic_nack or by closing."""

    command_status = st.ESME_RINVCMDLEN


class FramingError(PeerProtocolError):
    """command_length impossible or over the maximum: the stream cannot be resynchronised."""

    command_status = st.ESME_RINVCMDLEN


class MalformedPduError(PeerProtocolError):
    """A body we had to read could not be parsed."""

    command_status = st.ESME_RINVMSGLEN


class CarrierUnavailableError(GatewayError):
    """No carrier session bound: retry later."""

    command_status = st.ESME_RMSGQFUL


class CarrierTimeoutError(GatewayError):
    """The carrier never answered a forwarded request within its response timeout."""

    command_status = st.ESME_RMSGQFUL


class ThrottledError(GatewayError):
    command_status = st.ESME_RTHROTTLED


class RecipientBlockedError(GatewayError):
    command_status = st.ESME_RINVDSTADR


class StoreError(GatewayError):
    """The store could not make a change durable; the carrier should retry."""

    command_status = st.ESME_RX_T_APPN


class ConnectionLostError(GatewayError):
    """OSError / IncompleteReadError at a socket edge."""


def status_for(exc: BaseException) -> int:
    if isinstance(exc, GatewayError):
        return exc.command_status
    return GatewayError.command_status
