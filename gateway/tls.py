"""The one place SSLContexts are built and swapped on reload (standard-library `ssl`).

Listeners (SMPP over TLS, the HTTP endpoint) get a `ServerTls`: the context handed to
asyncio once, whose SNI callback moves every new handshake onto the newest context, so
a certificate reload needs no new listening socket and never touches a session already
up. The carrier leg gets a fresh `ssl.SSLContext` from `ClientTls.context` per connect.
`TlsSet` builds all of them from the settings (a file that does not load: ConfigError).
With the metrics' gauge, every load and reload reports the expiry of each certificate file
in use (`ExpiryReport`, `gateway_certificate_expiry_seconds`).

Both: TLS 1.2 minimum, the Mozilla "intermediate" cipher list for TLS 1.2 (TLS 1.3
suites are OpenSSL's defaults, which that list also names), no compression, no
renegotiation.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.certs import CertificateFormatError, earliest_expiry
from gateway.errors import ConfigError

if TYPE_CHECKING:
    from prometheus_client import Gauge

    from gateway.config import Settings
    from gateway.reload import Reloader

log = logging.getLogger(__name__)

# https://ssl-config.mozilla.org/ "intermediate" (v5.7): TLS 1.2 suites; TLS 1.3 is OpenSSL's default set
INTERMEDIATE_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
)
VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}


@dataclass(frozen=True, slots=True)
class ServerFiles:
    """What a TLS listener reads from disk (again on every reload)."""

    name: str  # for log lines and errors: "listen_tls", "http"
    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None
    min_version: str = "TLSv1.2"


@dataclass(frozen=True, slots=True)
class ClientFiles:
    """The carrier leg: trust anchors, optional client certificate, verification switch."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    verify: bool = True


def _harden(ctx: ssl.SSLContext, min_version: str) -> None:
    ctx.minimum_version = VERSIONS[min_version]
    ctx.set_ciphers(INTERMEDIATE_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION  # client order wins, as Mozilla says


def build_server_context(files: ServerFiles) -> ssl.SSLContext:
    """A server context from the files; raises ConfigError naming the file that failed."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _harden(ctx, files.min_version)
    _load_chain(ctx, files.name, files.cert_file, files.key_file)
    if files.client_ca_file is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        _load_ca(ctx, f"{files.name}.client_ca_file", files.client_ca_file)
    return ctx


def build_client_context(files: ClientFiles) -> ssl.SSLContext:
    """A client context: the system trust store unless ca_file; hostname checked unless verify is off."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _harden(ctx, "TLSv1.2")
    if files.verify:
        if files.ca_file is not None:
            _load_ca(ctx, "carrier.tls_ca_file", files.ca_file)
        else:
            ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if files.cert_file is not None and files.key_file is not None:
        _load_chain(ctx, "carrier.tls", files.cert_file, files.key_file)
    return ctx


def _load_chain(ctx: ssl.SSLContext, name: str, cert: Path, key: Path) -> None:
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{name}: certificate {cert} / key {key}: {_reason(exc)}") from None


def _load_ca(ctx: ssl.SSLContext, name: str, path: Path) -> None:
    try:
        ctx.load_verify_locations(cafile=path)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{name}: {path}: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)


class ExpiryReport:
    """One leg's series of gateway_certificate_expiry_seconds{listener, role, file}: set from the
    files just loaded, the series of files no longer in use removed."""

    def __init__(self, gauge: Gauge, listener: str) -> None:
        self.gauge = gauge
        self.listener = listener
        self.shown: list[tuple[str, str, str]] = []

    def report(self, files: list[tuple[str, Path | None]]) -> None:
        for labels in self.shown:
            self.gauge.remove(*labels)
        self.shown = []
        for role, path in files:
            if path is None:
                continue
            try:
                expiry = earliest_expiry(path)
            except (OSError, CertificateFormatError) as exc:
                log.warning("certificate_expiry_unreadable", extra={"listener": self.listener, "role": role,
                                                                    "file": str(path), "error": str(exc)})
                continue
            if expiry is not None:
                labels = (self.listener, role, str(path))
                self.gauge.labels(*labels).set(expiry)
                self.shown.append(labels)


class ServerTls:
    """A listener's TLS: `context` goes to create_server once; `reload()` swaps what handshakes use."""

    def __init__(self, files: ServerFiles, expiry: ExpiryReport | None = None) -> None:
        self.files = files
        self.expiry = expiry
        self.context = build_server_context(files)
        self.current = self.context
        self.context.sni_callback = self._pick
        self._report()

    def _report(self) -> None:
        if self.expiry is not None:
            self.expiry.report([("certificate", self.files.cert_file), ("client_ca", self.files.client_ca_file)])

    def _pick(self, ssl_obj: Any, server_name: str | None, ctx: ssl.SSLContext) -> None:
        # called for every ClientHello (server_name None without SNI): the newest files win
        current = self.current
        if current is not ctx:
            ssl_obj.context = current

    def prepare(self, files: ServerFiles) -> Callable[[], None]:
        """A context from (re-read) files, built aside; ConfigError says which file fails. The
        returned commit makes new handshakes use it (and reports the files' expiry)."""
        fresh = build_server_context(files)

        def commit() -> None:
            self.files, self.current = files, fresh
            self._report()
            log.info("tls_reloaded", extra={"listener": files.name, "cert_file": str(files.cert_file)})

        return commit


class ClientTls:
    """The carrier leg's TLS: the newest context from the files, and the name to check."""

    def __init__(self, files: ClientFiles, server_name: str, expiry: ExpiryReport | None = None) -> None:
        self.files = files
        self.server_name = server_name
        self.expiry = expiry
        self.context = build_client_context(files)
        self._report()

    def _report(self) -> None:
        if self.expiry is not None:
            f = self.files
            self.expiry.report([("ca", f.ca_file if f.verify else None),
                                ("certificate", f.cert_file if f.key_file is not None else None)])

    def prepare(self, files: ClientFiles) -> Callable[[], None]:
        fresh = build_client_context(files)

        def commit() -> None:
            self.files, self.context = files, fresh
            self._report()
            log.info("tls_reloaded", extra={"listener": "carrier"})

        return commit


class TlsSet:
    """The TLS of each leg that has it: the SMPP listener, the HTTP endpoint, the carrier."""

    def __init__(self, s: Settings, expiry: Gauge | None = None) -> None:
        def report(listener: str) -> ExpiryReport | None:
            return ExpiryReport(expiry, listener) if expiry is not None else None

        self.listen: ServerTls | None = None
        self.http: ServerTls | None = None
        self.carrier: ClientTls | None = None
        listen, http, carrier = _files(s)
        if listen is not None:
            self.listen = ServerTls(listen, report("listen_tls"))
        if http is not None:
            self.http = ServerTls(http, report("http"))
        if carrier is not None:
            self.carrier = ClientTls(carrier, s.carrier.server_name, report("carrier"))

    def register(self, reloader: Reloader) -> None:
        reloader.add("TLS files", self.prepare)

    def prepare(self, s: Settings) -> Callable[[], None] | None:
        """Every leg's context from the files s names, built aside (turning a leg's TLS on or off
        needs a restart: the reload keeps such settings as they run)."""
        listen, http, carrier = _files(s)
        commits = []
        if self.listen is not None and listen is not None:
            commits.append(self.listen.prepare(listen))
        if self.http is not None and http is not None:
            commits.append(self.http.prepare(http))
        if self.carrier is not None and carrier is not None:
            commits.append(self.carrier.prepare(carrier))
        if not commits:
            return None

        def commit() -> None:
            for each in commits:
                each()

        return commit


def _files(s: Settings) -> tuple[ServerFiles | None, ServerFiles | None, ClientFiles | None]:
    lt, http, c = s.listen_tls, s.http, s.carrier
    listen = None if lt.cert_file is None or lt.key_file is None else ServerFiles(
        "listen_tls", lt.cert_file, lt.key_file, lt.client_ca_file, lt.min_version)
    https = None if http.cert_file is None or http.key_file is None else ServerFiles(
        "http", http.cert_file, http.key_file)
    carrier = ClientFiles(c.tls_ca_file, c.tls_cert_file, c.tls_key_file, c.tls_verify) if c.tls else None
    return listen, https, carrier


def describe(transport: Any) -> dict[str, Any]:
    """Log fields of a TLS transport (version, cipher, peer certificate subject); {} for plaintext."""
    ssl_obj = transport.get_extra_info("ssl_object") if transport is not None else None
    if ssl_obj is None:
        return {}
    cipher = ssl_obj.cipher()
    peer = ssl_obj.getpeercert() or {}
    return {
        "tls_version": ssl_obj.version(),
        "tls_cipher": cipher[0] if cipher else None,
        "peer_subject": subject_text(peer.get("subject", ())) or None,
    }


def subject_text(subject: Any) -> str:
    """getpeercert()'s subject tuple as 'CN=x,O=y'."""
    return ",".join(f"{_SHORT.get(k, k)}={v}" for rdn in subject for k, v in rdn)


_SHORT = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU",
          "countryName": "C", "localityName": "L", "stateOrProvinceName": "ST"}


def failure_reason(exc: BaseException) -> str:
    """A short reason for a failed carrier handshake, for /readyz and the metric label."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"carrier TLS certificate rejected: {exc.verify_message or exc.reason}"
    if isinstance(exc, ssl.SSLError):
        return f"carrier TLS handshake failed: {exc.reason or exc}"
    return f"carrier connection failed: {str(exc) or type(exc).__name__}"
