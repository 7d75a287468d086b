"""TLS settings (the contract's names), their validation, check-config, and the contexts built."""

from __future__ import annotations

import re
import ssl
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import load_settings
from gateway.errors import ConfigError
from gateway.metrics import Metrics
from gateway.tls import (
    INTERMEDIATE_CIPHERS,
    ClientFiles,
    ServerFiles,
    TlsSet,
    build_client_context,
    build_server_context,
)
from tests.integration.pki import Pki

ENV = {
    "GATEWAY_LISTEN__ENABLED": "false",
    "GATEWAY_LISTEN_TLS__HOST": "0.0.0.0",
    "GATEWAY_LISTEN_TLS__PORT": "3551",
    "GATEWAY_LISTEN_TLS__CERT_FILE": "/etc/gw/tls.crt",
    "GATEWAY_LISTEN_TLS__KEY_FILE": "/etc/gw/tls.key",
    "GATEWAY_LISTEN_TLS__CLIENT_CA_FILE": "/etc/gw/clients.pem",
    "GATEWAY_LISTEN_TLS__MIN_VERSION": "TLSv1.3",
    "GATEWAY_CARRIER__TLS": "true",
    "GATEWAY_CARRIER__TLS_CA_FILE": "/etc/gw/carrier-ca.pem",
    "GATEWAY_CARRIER__TLS_SERVER_NAME": "smpp.carrier.example",
    "GATEWAY_CARRIER__TLS_CERT_FILE": "/etc/gw/client.crt",
    "GATEWAY_CARRIER__TLS_KEY_FILE": "/etc/gw/client.key",
    "GATEWAY_CARRIER__TLS_VERIFY": "true",
}


def test_contract_names(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    s = load_settings()
    assert not s.listen.enabled
    lt = s.listen_tls
    assert (lt.host, lt.port, lt.enabled, lt.min_version) == ("0.0.0.0", 3551, True, "TLSv1.3")
    assert lt.client_ca_file == Path("/etc/gw/clients.pem")
    c = s.carrier
    assert c.tls and c.tls_verify and c.server_name == "smpp.carrier.example"
    assert (c.tls_cert_file, c.tls_key_file) == (Path("/etc/gw/client.crt"), Path("/etc/gw/client.key"))


def test_defaults() -> None:
    s = load_settings()
    assert s.listen.enabled and not s.listen_tls.enabled
    assert (s.listen_tls.host, s.listen_tls.port, s.listen_tls.min_version) == ("127.0.0.1", 3550, "TLSv1.2")
    assert not s.carrier.tls and s.carrier.tls_verify and s.carrier.server_name == s.carrier.host
    assert s.http.host == "127.0.0.1" and s.http.metrics_token is None


@pytest.mark.parametrize("overrides, message", [
    ({"listen_tls": {"cert_file": "/a.crt"}}, "listen_tls: set both"),
    ({"listen_tls": {"client_ca_file": "/ca.pem"}}, "client_ca_file needs cert_file"),
    ({"listen_tls": {"min_version": "TLSv1.1"}}, "listen_tls.min_version"),
    ({"listen": {"enabled": False}}, "no SMPP listener"),
    ({"carrier": {"tls_ca_file": "/ca.pem"}}, "tls_ca_file set but carrier.tls is false"),
    ({"carrier": {"tls_verify": False}}, "tls_verify set but carrier.tls is false"),
    ({"carrier": {"tls": True, "tls_cert_file": "/c.crt"}}, "carrier: set both"),
    ({"http": {"metrics_token": "a", "metrics_token_file": "/t"}}, "exclusive"),
    ({"http": {"metrics_token": "  "}}, "metrics_token is empty"),
    ({"http": {"key_file": "/k"}}, "http: set both"),
])
def test_invalid(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(None, **overrides)


def test_check_config_names_the_file_that_does_not_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    pki = Pki(tmp_path)
    good = pki.issue("gw")
    monkeypatch.setenv("GATEWAY_LISTEN_TLS__CERT_FILE", str(good.cert))
    monkeypatch.setenv("GATEWAY_LISTEN_TLS__KEY_FILE", str(good.key))
    monkeypatch.setenv("GATEWAY_HTTP__METRICS_TOKEN", "scrape-secret")
    assert main(["check-config"]) == 0
    out = capsys.readouterr().out
    assert "scrape-secret" not in out and '"metrics_token": "**********"' in out
    monkeypatch.setenv("GATEWAY_LISTEN_TLS__KEY_FILE", str(tmp_path / "missing.key"))
    assert main(["check-config"]) == 2
    err = capsys.readouterr().err
    assert "config error: listen_tls: certificate" in err and "missing.key" in err
    monkeypatch.setenv("GATEWAY_LISTEN_TLS__KEY_FILE", str(good.key))
    monkeypatch.setenv("GATEWAY_CARRIER__TLS", "true")
    monkeypatch.setenv("GATEWAY_CARRIER__TLS_CA_FILE", str(good.key))  # a key is no CA bundle
    assert main(["check-config"]) == 2
    assert "config error: carrier.tls_ca_file" in capsys.readouterr().err


def test_contexts_are_hardened(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    files = pki.issue("gw")
    server = build_server_context(ServerFiles("t", files.cert, files.key, pki.ca_file))
    client = build_client_context(ClientFiles(pki.ca_file))
    allowed = set(INTERMEDIATE_CIPHERS.split(":"))
    for ctx in (server, client):
        assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
        tls12 = {c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"}
        assert tls12 and tls12 <= allowed
        assert ctx.options & ssl.OP_NO_COMPRESSION
    assert server.verify_mode == ssl.CERT_REQUIRED
    assert client.verify_mode == ssl.CERT_REQUIRED and client.check_hostname
    unverified = build_client_context(ClientFiles(verify=False))
    assert unverified.verify_mode == ssl.CERT_NONE and not unverified.check_hostname
    tls13 = build_server_context(ServerFiles("t", files.cert, files.key, min_version="TLSv1.3"))
    assert tls13.minimum_version == ssl.TLSVersion.TLSv1_3


def test_empty_value_unsets_a_file() -> None:
    s = load_settings(None, listen_tls={"cert_file": "", "key_file": " "}, http={"metrics_token_file": ""})
    assert s.listen_tls.cert_file is None and not s.listen_tls.enabled and s.http.metrics_token_file is None


def test_compose_environment_over_the_example_toml(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """deploy/compose.yaml runs the example TOML in plaintext against the simulator: still valid."""
    root = Path(__file__).resolve().parents[2]
    compose = (root / "deploy/compose.yaml").read_text()
    block = compose.split("environment:", 1)[1].split("depends_on", 1)[0]
    for name, value in re.findall(r"^\s+(GATEWAY_\w+): (.*)$", block, re.MULTILINE):
        monkeypatch.setenv(name, re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value.strip()).strip("'\""))
    assert main(["check-config", "--config", str(root / "deploy/gateway.example.toml")]) == 0, \
        capsys.readouterr().err
    out = capsys.readouterr().out
    assert '"tls": false' in out and '"cert_file": null' in out


def test_expiry_of_every_file_in_use(tmp_path: Path) -> None:
    """gateway_certificate_expiry_seconds: the carrier's CA and client certificate, the HTTP listener's
    certificate; a reload re-reads them; verify off means the CA file is not in use."""
    pki = Pki(tmp_path)
    client, http = pki.issue("client"), pki.issue("http")
    when = datetime(2033, 3, 3, tzinfo=UTC)
    http.write(pki.ca.issue_cert("localhost", not_after=when))
    metrics = Metrics()
    carrier = {"tls": True, "tls_ca_file": str(pki.ca_file), "tls_cert_file": str(client.cert),
               "tls_key_file": str(client.key)}
    s = load_settings(None, carrier=carrier, http={"cert_file": str(http.cert), "key_file": str(http.key)})
    tls = TlsSet(s, metrics.certificate_expiry)
    family = next(iter(metrics.certificate_expiry.collect()))
    shown = {(x.labels["listener"], x.labels["role"], x.labels["file"]): x.value for x in family.samples}
    assert set(shown) == {("carrier", "ca", str(pki.ca_file)), ("carrier", "certificate", str(client.cert)),
                          ("http", "certificate", str(http.cert))}
    assert shown["http", "certificate", str(http.cert)] == when.timestamp()
    assert tls.carrier is not None
    renewed = datetime(2034, 4, 4, tzinfo=UTC)
    client.write(pki.ca.issue_cert("client", not_after=renewed))
    tls.carrier.prepare(tls.carrier.files)()  # a reload: files re-read aside, then committed
    assert metrics.registry.get_sample_value("gateway_certificate_expiry_seconds", {
        "listener": "carrier", "role": "certificate", "file": str(client.cert)}) == renewed.timestamp()
    unverified = load_settings(None, carrier={"tls": True, "tls_verify": False, "tls_ca_file": str(pki.ca_file)})
    metrics = Metrics()
    TlsSet(unverified, metrics.certificate_expiry)
    assert not next(iter(metrics.certificate_expiry.collect())).samples
