"""Settings (pydantic-settings): flags > environment (GATEWAY_, `__` nesting) > TOML file > defaults.

Secrets are SecretStr and masked in every rendering of the configuration.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.config import ConfigDict
from pydantic.functional_validators import BeforeValidator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from gateway import credentials
from gateway.config_lines import account_line, locate, refine
from gateway.errors import ConfigError
from gateway.limits.networks import Network, parse_networks
from gateway.policy.compliance_settings import Program, check_programs
from gateway.policy.numbers import e164
from gateway.policy.settings import OptoutSettings
from gateway.store import check_database_url, mask_url

Port = int
STRICT = ConfigDict(extra="forbid")  # a mistyped key is an error, never silently ignored


class Listen(BaseModel):
    model_config = STRICT

    enabled: bool = Field(True, description="false: no plaintext SMPP listener")
    host: str = "127.0.0.1"
    port: Port = Field(2775, ge=0, le=65535)


TlsVersion = Literal["TLSv1.2", "TLSv1.3"]


def _empty_is_none(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


# a file path; "" (e.g. GATEWAY_LISTEN_TLS__CERT_FILE= over a TOML file that sets one) means unset
FilePath = Annotated[Path | None, BeforeValidator(_empty_is_none)]


def _pair(cert: Path | None, key: Path | None, where: str) -> None:
    if (cert is None) != (key is None):
        raise ValueError(f"{where}: set both the certificate and the key file, or neither")


class ListenTls(BaseModel):
    """SMPP over TLS for application binds; on when cert_file and key_file are set."""

    model_config = STRICT

    host: str = "127.0.0.1"
    port: Port = Field(3550, ge=0, le=65535)
    cert_file: FilePath = Field(None, description="PEM certificate chain")
    key_file: FilePath = Field(None, description="PEM private key")
    client_ca_file: FilePath = Field(None, description="set: clients must present a certificate from this CA")
    min_version: TlsVersion = "TLSv1.2"

    @property
    def enabled(self) -> bool:
        return self.cert_file is not None and self.key_file is not None

    @model_validator(mode="after")
    def _files(self) -> ListenTls:
        _pair(self.cert_file, self.key_file, "listen_tls")
        if self.client_ca_file is not None and not self.enabled:
            raise ValueError("listen_tls: client_ca_file needs cert_file and key_file")
        return self


class Carrier(BaseModel):
    model_config = STRICT

    host: str = "127.0.0.1"
    port: Port = Field(2776, ge=1, le=65535)
    system_id: str = Field("", max_length=15)
    password: SecretStr = Field(SecretStr(""))
    system_type: str = Field("", max_length=12)
    sessions: int = Field(1, ge=1, le=64)
    window: int = Field(500, ge=1, le=100_000, description="outstanding requests per carrier bind")
    response_timeout: float = Field(10.0, gt=0)
    bind_timeout: float = Field(10.0, gt=0)
    enquire_link_interval: float = Field(30.0, gt=0)
    reconnect_min_interval: float = Field(1.0, gt=0)
    reconnect_max_interval: float = Field(60.0, gt=0)
    timeout_status: int = Field(0x14, ge=1, le=0xFFFFFFFF, description="to the application when the carrier never answers")
    message_id_format: Literal["exact", "hex", "decimal"] = Field(
        "exact", description="how receipts spell the submit_sm_resp message_id (gateway/smpp/message_id.py)"
    )
    password_file: Path | None = Field(None, description="read the password from this file (a secret mount)")
    tls: bool = Field(False, description="connect to the carrier over TLS (never falls back to plaintext)")
    tls_ca_file: FilePath = Field(None, description="CAs for the carrier's certificate; default the system's")
    tls_server_name: str = Field("", max_length=253, description="checked against the certificate and sent as SNI; default host")
    tls_cert_file: FilePath = Field(None, description="client certificate, for mutual TLS")
    tls_key_file: FilePath = None
    tls_verify: bool = Field(True, description="false: any carrier certificate is accepted (warned at start)")
    max_tps: float | None = Field(None, description="submits per second to the carrier over all binds (none: unlimited)")
    burst: float | None = Field(None, description="submits beyond the even pace (default max_tps / 10, at least 1)")
    max_queue_delay: float = Field(5.0, description="a request waiting longer for the carrier rate gets 0x58")
    throttle_pause: float = Field(1.0, ge=0, le=300, description="a carrier 0x58/0x14 pauses that bind this long")

    _max_tps = field_validator("max_tps")(lambda v: _check_tps(v))
    _burst = field_validator("burst")(lambda v: _check_burst(v))

    @model_validator(mode="after")
    def _queue_delay(self) -> Carrier:
        if "max_queue_delay" not in self.model_fields_set:  # the default never exceeds the timeout
            self.max_queue_delay = min(self.max_queue_delay, self.response_timeout)
        if not (math.isfinite(self.max_queue_delay) and self.max_queue_delay > 0):
            raise ValueError(f"max_queue_delay must be a positive number of seconds, not {self.max_queue_delay!r}")
        if self.max_queue_delay > self.response_timeout:
            raise ValueError(f"max_queue_delay ({self.max_queue_delay:g} s) is longer than response_timeout "
                             f"({self.response_timeout:g} s): the application would give up first")
        return self

    @property
    def effective_burst(self) -> float:
        """The carrier bucket's burst: as configured, else a tenth of max_tps, at least 1."""
        if self.burst is not None:
            return self.burst
        return max(1.0, (self.max_tps or 0) / 10)

    @field_validator("password")
    @classmethod
    def _password_len(cls, v: SecretStr) -> SecretStr:
        if len(v.get_secret_value()) > 8:
            raise ValueError("SMPP 3.4 passwords are at most 8 characters")
        return v

    @model_validator(mode="after")
    def _password_from_file(self) -> Carrier:
        if self.password_file is not None:
            if self.password.get_secret_value():
                raise ValueError("carrier: give password or password_file, not both")
            text = _read_secret(self.password_file)
            if len(text) > 8:
                raise ValueError(f"carrier: password_file {self.password_file}: SMPP 3.4 passwords are at most 8 characters")
            self.password = SecretStr(text)
        return self

    @model_validator(mode="after")
    def _tls_files(self) -> Carrier:
        _pair(self.tls_cert_file, self.tls_key_file, "carrier")
        if not self.tls:
            stray = [name for name in ("tls_ca_file", "tls_cert_file", "tls_key_file", "tls_server_name")
                     if getattr(self, name)]
            if stray or not self.tls_verify:
                raise ValueError(f"carrier: {', '.join(stray) or 'tls_verify'} set but carrier.tls is false")
        return self

    @property
    def server_name(self) -> str:
        return self.tls_server_name or self.host


class Account(BaseModel):
    model_config = STRICT

    system_id: str = Field(min_length=1, max_length=15)
    password: SecretStr | None = None
    password_hash: SecretStr | None = Field(None, description="printed by `gateway hash-password`")
    password_file: Path | None = Field(None, description="a file holding the password or its hash")
    allowed_ips: list[str] | None = Field(None, description="addresses or CIDRs; none: any")
    require_tls: bool = Field(False, description="binds only over the TLS listener")
    numbers: list[str] = Field(default_factory=list)
    senders: list[str] = Field(default_factory=list, description="alphanumeric source_addr it may send from")
    max_binds: int = Field(10, ge=1, le=1000)
    window: int = Field(100, ge=1, le=10_000)
    max_tps: float | None = Field(None, description="MT segments per second over all its binds (none: unlimited)")
    burst: float | None = Field(None, description="segments beyond the rate at once (default one second's worth)")
    programs: list[Program] = Field(default_factory=list, description="compliance programs (README, Compliance)")

    _max_tps = field_validator("max_tps")(lambda v: _check_tps(v))
    _burst = field_validator("burst")(lambda v: _check_burst(v))

    @property
    def effective_burst(self) -> float:
        """The account bucket's burst: as configured, else one second's worth, at least 1."""
        if self.burst is not None:
            return self.burst
        return max(1.0, self.max_tps or 0)

    @field_validator("password")
    @classmethod
    def _password_len(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not 1 <= len(v.get_secret_value()) <= 8:
            raise ValueError("password must be 1 to 8 characters (SMPP 3.4)")
        return v

    @field_validator("senders")
    @classmethod
    def _senders(cls, v: list[str]) -> list[str]:
        for sender in v:  # numbers belong in `numbers`, where they are normalised
            if not 1 <= len(sender) <= 11 or sender.lstrip("+").replace(" ", "").isdigit():
                raise ValueError(f"sender {sender!r}: an alphanumeric name of 1-11 characters (numbers go in numbers)")
        return v

    @field_validator("password_hash")
    @classmethod
    def _hash_format(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None:
            credentials.parse_hash(v.get_secret_value())
        return v

    @field_validator("allowed_ips")
    @classmethod
    def _networks(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return None
        if not v:
            raise ValueError("an empty list lets nobody bind: leave allowed_ips out to allow any address")
        return [str(n) for n in parse_networks(v)]

    @model_validator(mode="after")
    def _programs(self) -> Account:
        check_programs(self.system_id, self.programs)
        return self

    @model_validator(mode="after")
    def _one_credential(self) -> Account:
        given = [self.password is not None, self.password_hash is not None, self.password_file is not None]
        if sum(given) != 1:
            raise ValueError(f"account {self.system_id!r}: give exactly one of password, password_hash, password_file")
        if self.password_file is not None:
            text = _read_secret(self.password_file)
            if len(text) > credentials.MAX_PASSWORD:  # longer than any SMPP password: a hash
                try:
                    credentials.parse_hash(text)
                except ValueError as exc:
                    raise ValueError(f"account {self.system_id!r}: password_file {self.password_file}: {exc}") from None
                self.password_hash = SecretStr(text)
            elif text:
                self.password = SecretStr(text)
            else:
                raise ValueError(f"account {self.system_id!r}: password_file {self.password_file} is empty")
        return self

    def stored_hash(self) -> credentials.ScryptHash | None:
        return None if self.password_hash is None else credentials.parse_hash(self.password_hash.get_secret_value())

    def networks(self) -> tuple[Network, ...] | None:
        return None if self.allowed_ips is None else parse_networks(self.allowed_ips)


class Esme(BaseModel):
    """Application-side session limits."""

    model_config = STRICT

    session_init_timeout: float = Field(10.0, gt=0)
    inactivity_timeout: float = Field(120.0, gt=0)
    response_timeout: float = Field(10.0, gt=0, description="for deliver_sm we send to applications")
    max_pdu: int = Field(65536, ge=256, le=1 << 20)
    enquire_link_interval: float = Field(30.0, gt=0)
    lockout_threshold: int = Field(5, ge=1, le=10_000, description="failed binds from one address ...")
    lockout_window: float = Field(60.0, gt=0, description="... within this many seconds ...")
    lockout_duration: float = Field(300.0, gt=0, description="... lock it out this long")
    lockout_exempt: list[str] = Field(default_factory=list, description="CIDRs never locked out")
    max_connections: int = Field(10_000, ge=1, description="open application connections, bound or not")
    max_connections_per_ip: int = Field(200, ge=1, description="... from one source address")

    @field_validator("lockout_exempt")
    @classmethod
    def _exempt(cls, v: list[str]) -> list[str]:
        return [str(n) for n in parse_networks(v)]

    def exempt_networks(self) -> tuple[Network, ...]:
        return parse_networks(self.lockout_exempt)


class Routing(BaseModel):
    model_config = STRICT

    unbound_status: int = Field(0x64, ge=1, le=0xFFFFFFFF, description="deliver_sm_resp when no receiver is bound")
    unbound: Literal["outbox", "reject"] = Field(
        "outbox", description="no receiver bound: keep in the durable outbox, or a temporary status"
    )
    outbox_ttl: float = Field(72 * 3600.0, gt=0, description="outbox rows expire after this")
    outbox_retry_interval: float = Field(2.0, gt=0, description="first retry after a temporary status; doubles")
    receipt_route_ttl: float = Field(72 * 3600.0, gt=0)
    max_receipt_routes: int = Field(2_000_000, ge=1000, description="in-memory message_id -> account entries")
    receipt_hold: float = Field(
        2.0, ge=0, le=30, description="a receipt that overtakes its submit_sm_resp waits this long for the route"
    )


class Cluster(BaseModel):
    """Gateways on one PostgreSQL store split every limit (gateway/cluster.py)."""

    model_config = STRICT

    heartbeat_interval: float = Field(1.0, gt=0, le=60, allow_inf_nan=False, description="seconds between heartbeats")
    missing_heartbeats: int = Field(
        3, ge=2, le=100, description="a gateway not seen for this many intervals no longer counts"
    )


MIN_API_TOKEN = 16  # characters: a guessable token is no token


class ApiToken(BaseModel):
    """One bearer token of the admin HTTP API (README "Admin HTTP API")."""

    model_config = STRICT

    name: str = Field("", max_length=64, description="who holds it, for the log")
    token: SecretStr | None = None
    token_file: FilePath = Field(None, description="the token from a file (re-read on SIGHUP)")
    role: Literal["read", "write"] = Field("read", description="read: GET routes; write: every route")

    @model_validator(mode="after")
    def _one_source(self) -> ApiToken:
        if (self.token is None) == (self.token_file is None):
            raise ValueError("http.api_tokens: set token or token_file (one of them)")
        if self.token is not None and len(self.token.get_secret_value().strip()) < MIN_API_TOKEN:
            raise ValueError(f"http.api_tokens: a token has at least {MIN_API_TOKEN} characters")
        return self


class Http(BaseModel):
    model_config = STRICT

    host: str = "127.0.0.1"
    port: Port = Field(9102, ge=0, le=65535)
    metrics_token: SecretStr | None = Field(None, description="/metrics wants 'Authorization: Bearer <token>'")
    metrics_token_file: FilePath = Field(None, description="the token from a file (re-read on SIGHUP)")
    cert_file: FilePath = Field(None, description="set with key_file: the endpoint speaks HTTPS")
    key_file: FilePath = None
    api_tokens: list[ApiToken] = Field(default_factory=list, description="none: the admin API is off")

    @model_validator(mode="after")
    def _tls_and_token(self) -> Http:
        _pair(self.cert_file, self.key_file, "http")
        if self.metrics_token is not None and self.metrics_token_file is not None:
            raise ValueError("http: metrics_token and metrics_token_file are exclusive")
        if self.metrics_token is not None and not self.metrics_token.get_secret_value().strip():
            raise ValueError("http: metrics_token is empty")
        return self


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GATEWAY_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    listen: Listen = Field(default_factory=Listen)
    listen_tls: ListenTls = Field(default_factory=ListenTls)
    carrier: Carrier = Field(default_factory=Carrier)
    accounts: list[Account] = Field(default_factory=list)
    http: Http = Field(default_factory=Http)
    database_url: str = Field(default_factory=lambda: _default_database_url())
    database_must_exist: bool = Field(False, description="a missing database stops the start (no empty block list)")
    esme: Esme = Field(default_factory=Esme)
    routing: Routing = Field(default_factory=Routing)
    cluster: Cluster = Field(default_factory=Cluster)
    optout: OptoutSettings = Field(default_factory=OptoutSettings)
    drain_timeout: float = Field(5.0, ge=0)
    events_retention_days: int = Field(1826, ge=1, description="audit log retention (TCPA: five years)")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @model_validator(mode="after")
    def _unique_accounts(self) -> Settings:
        for account in self.accounts:
            account.numbers = [_number(n, self.optout.default_region, account.system_id) for n in account.numbers]
        seen: set[str] = set()
        owners: dict[str, str] = {}
        for account in self.accounts:
            if account.system_id in seen:
                raise ValueError(f"accounts: system_id {account.system_id!r} is listed twice")
            seen.add(account.system_id)
            for number in account.numbers:
                if number in owners:
                    raise ValueError(
                        f"accounts: number {number} belongs to both {owners[number]!r} and {account.system_id!r}"
                    )
                owners[number] = account.system_id
        if not self.listen.enabled and not self.listen_tls.enabled:
            raise ValueError("listen.enabled is false and listen_tls has no cert_file/key_file: no SMPP listener")
        if not self.database_url.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError("database_url must be sqlite:///PATH or postgresql://...")
        return self

    @model_validator(mode="after")
    def _program_numbers(self) -> Settings:
        """Program numbers normalised like account numbers; program keywords name a program."""
        names = set()
        for account in self.accounts:
            for program in account.programs:
                program.numbers = [_number(n, self.optout.default_region, account.system_id) for n in program.numbers]
                names.add(program.name)
            check_programs(account.system_id, account.programs)
        for entry in self.optout.programs.keywords:
            if entry.program not in names:
                raise ValueError(f"optout.programs.keywords: no account has a program {entry.program!r}")
        return self

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, url: str) -> str:
        try:
            check_database_url(url)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return url

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if _TOML_FILE is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=_TOML_FILE))
        return tuple(sources)


def _check_tps(value: float | None) -> float | None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise ValueError(f"max_tps must be a positive number of messages per second, not {value!r}")
    return value


def _check_burst(value: float | None) -> float | None:
    if value is not None and not (math.isfinite(value) and value >= 1):
        raise ValueError(f"burst must be at least 1 message, not {value!r}")
    return value


_TOML_FILE: Path | None = None
# GATEWAY_* variables that are not settings but are read by the project: the config file, the tests' database
OTHER_ENV = frozenset({"GATEWAY_CONFIG", "GATEWAY_TEST_DATABASE_URL"})


def _default_database_url() -> str:
    """sqlite:///gateway.db, or under systemd (StateDirectory=) the file in the state directory."""
    state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    return f"sqlite:///{Path(state) / 'gateway.db'}" if state else "sqlite:///gateway.db"


def unknown_env(environ: Mapping[str, str]) -> list[str]:
    """GATEWAY_* variables that name no setting (a typo would otherwise be ignored silently).
    Keys inside a section (GATEWAY_CARRIER__X) are checked by the section's model."""
    fields = {name.upper(): info for name, info in Settings.model_fields.items()}
    unknown = []
    for name in environ:
        upper = name.upper()
        if not upper.startswith("GATEWAY_") or upper in OTHER_ENV:
            continue
        key, nested, _ = upper[len("GATEWAY_"):].partition("__")
        info = fields.get(key)
        if info is None or (nested and not _is_section(info.annotation)):
            unknown.append(name)
    return sorted(unknown)


def _is_section(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _read_secret(path: Path) -> str:
    """A secret file's text (Docker and Kubernetes secrets), one trailing newline stripped."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        return credentials.strip_newline(data).decode("utf-8")  # as a password written in the TOML file
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text") from None


LOOPBACK_HOSTS = frozenset({"localhost", "ip6-localhost"})


def _is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # 0.0.0.0, '::', '' and host names: reachable from elsewhere


def config_warnings(settings: Settings) -> list[str]:
    """Not errors, but worth a line: plaintext application passwords on a listener others can reach."""
    hosts = [settings.listen.host] if getattr(settings.listen, "enabled", True) else []
    tls = getattr(settings, "listen_tls", None)
    if tls is not None and getattr(tls, "cert_file", None):
        hosts.append(str(getattr(tls, "host", "")))
    exposed = [h for h in hosts if not _is_loopback(h)]
    if not exposed:
        return []
    return [
        f"accounts: {a.system_id!r} has a plaintext password and the SMPP listener {exposed[0] or '*'} is not "
        "loopback: store a password_hash instead (`gateway hash-password`)"
        for a in settings.accounts if a.password is not None
    ]


def _number(raw: str, region: str, system_id: str) -> str:
    """An account number in E.164 ('+14155550100'); short codes stay as digits."""
    text = raw.strip().replace(" ", "").replace("-", "")
    number = e164(1 if text.startswith("+") else 0, text, region)
    if number is not None:
        return number
    if text.isdigit() and 3 <= len(text) <= 8:
        return text
    raise ValueError(f"accounts: {system_id!r} number {raw!r} is neither E.164 nor a short code")


def load_settings(config_file: str | None = None, **overrides: Any) -> Settings:
    """Build settings; raises ConfigError whose lines are one problem each."""
    global _TOML_FILE
    path = config_file or os.environ.get("GATEWAY_CONFIG")
    problems = [f"environment: {name} is not a setting" for name in unknown_env(os.environ)]
    if path:
        if not Path(path).is_file():
            raise ConfigError(f"config file {path}: not found")
        _TOML_FILE = Path(path)
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        text = _file_text(path)
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "settings"
            line = locate(text, refine(err["loc"], err["msg"])) if text else None
            if line is None and text and err["msg"].startswith("Value error, accounts:"):
                line = account_line(text, err["msg"])
            where = f" (line {line} of {path})" if line is not None else ""
            problems.append(f"{loc}: {err['msg'].removeprefix('Value error, ')}{where}")
        raise ConfigError("\n".join(problems)) from None
    except tomllib.TOMLDecodeError as exc:  # its message names the line and column
        raise ConfigError("\n".join([*problems, f"config file {path}: {exc}"])) from None
    except (ValueError, OSError) as exc:  # bad JSON in env, an unreadable file
        raise ConfigError("\n".join([*problems, f"configuration: {exc}"])) from None
    finally:
        _TOML_FILE = None
    if problems:
        raise ConfigError("\n".join(problems))
    return settings


def _file_text(path: str | None) -> str:
    try:
        return Path(path).read_text(encoding="utf-8") if path else ""
    except (OSError, UnicodeDecodeError):
        return ""


def effective(settings: Settings) -> str:
    """The effective configuration as JSON with secrets masked."""
    data = settings.model_dump(mode="json")
    data["database_url"] = mask_url(settings.database_url)
    return json.dumps(data, indent=2, sort_keys=True)
