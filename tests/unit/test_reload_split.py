"""What a reload applies and what needs a restart (gateway/reload.py), and where a file says it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.config import Settings, load_settings
from gateway.config_lines import account_line, locate, refine
from gateway.errors import ConfigError
from gateway.reload import ConfigSource, ReloadResult, keep_running, split

BASE: dict[str, Any] = {"database_url": "sqlite:///unused.db",
                        "accounts": [{"system_id": "acme", "password": "secret"}]}


def settings(**changes: Any) -> Settings:
    merged = dict(BASE)
    for key, value in changes.items():
        merged[key] = {**merged[key], **value} if isinstance(merged.get(key), dict) else value
    return load_settings(None, **merged)


@pytest.mark.parametrize("changes, applied, restart", [
    ({"accounts": [{"system_id": "acme", "password": "other"}]}, ["accounts"], []),
    ({"carrier": {"max_tps": 10.0, "burst": 2.0}}, ["carrier.max_tps", "carrier.burst"], []),
    ({"carrier": {"host": "10.0.0.1", "max_tps": 10.0}}, ["carrier.max_tps"], ["carrier.host"]),
    ({"carrier": {"tls": True, "tls_verify": False}}, [], ["carrier.tls", "carrier.tls_verify"]),
    ({"listen": {"port": 2777}, "database_url": "sqlite:///other.db"}, [], ["listen.port", "database_url"]),
    ({"esme": {"lockout_threshold": 9}, "log_level": "DEBUG"}, ["esme.lockout_threshold", "log_level"], []),
    ({"optout": {"scope": "account", "default_region": "GB"}}, ["optout.scope"], ["optout.default_region"]),
    ({"routing": {"unbound": "reject"}, "cluster": {"missing_heartbeats": 5}},
     [], ["routing.unbound", "cluster.missing_heartbeats"]),
    ({"http": {"metrics_token": "tok", "port": 9200}}, ["http.metrics_token"], ["http.port"]),
])
def test_split(changes: dict[str, Any], applied: list[str], restart: list[str]) -> None:
    assert split(settings(), settings(**changes)) == (applied, restart)


def test_tls_files_reload_while_the_listener_stays_on(tmp_path: Path) -> None:
    on = {"cert_file": str(tmp_path / "a.pem"), "key_file": str(tmp_path / "a.key")}
    running = settings(listen_tls=on)
    renamed = settings(listen_tls={**on, "cert_file": str(tmp_path / "b.pem")})
    assert split(running, renamed) == (["listen_tls.cert_file"], [])
    assert split(settings(), running) == ([], ["listen_tls.cert_file", "listen_tls.key_file"])  # turned on
    mutual = settings(listen_tls={**on, "client_ca_file": str(tmp_path / "ca.pem"), "min_version": "TLSv1.3"})
    assert split(running, mutual) == ([], ["listen_tls.client_ca_file", "listen_tls.min_version"])
    other_ca = settings(listen_tls={**on, "client_ca_file": str(tmp_path / "ca2.pem"), "min_version": "TLSv1.3"})
    assert split(mutual, other_ca) == (["listen_tls.client_ca_file"], [])


def test_keep_running_keeps_restart_settings_and_takes_the_rest() -> None:
    running = settings()
    new = settings(carrier={"host": "10.0.0.1", "max_tps": 10.0}, listen={"port": 2777},
                   accounts=[{"system_id": "newco", "password": "pw"}])
    applied, restart = split(running, new)
    merged = keep_running(running, new, restart)
    assert (merged.carrier.host, merged.listen.port) == ("127.0.0.1", 2775)
    assert merged.carrier.max_tps == 10.0 and [a.system_id for a in merged.accounts] == ["newco"]
    assert split(running, merged) == (applied, [])


def test_keep_running_refuses_a_queue_delay_beyond_the_running_timeout() -> None:
    running = settings()
    new = settings(carrier={"response_timeout": 30.0, "max_queue_delay": 20.0, "max_tps": 5.0})
    with pytest.raises(ConfigError, match="max_queue_delay"):
        keep_running(running, new, split(running, new)[1])


def test_source_reads_the_file_again_with_flags_winning(tmp_path: Path) -> None:
    path = tmp_path / "g.toml"
    path.write_text('log_level = "DEBUG"\n[carrier]\nmax_tps = 5.0\n')
    source = ConfigSource(str(path), {**BASE, "carrier": {"max_tps": 9.0}})
    first = source.load()
    path.write_text('log_level = "WARNING"\n[carrier]\nmax_tps = 5.0\n')
    second = source.load()
    assert (first.log_level, second.log_level, second.carrier.max_tps) == ("DEBUG", "WARNING", 9.0)


def test_result_is_truthy_when_applied() -> None:
    assert ReloadResult(True, restart_needed=["listen.port"])
    assert not ReloadResult(False, failed=["configuration: bad"])
    assert ReloadResult(True).as_dict()["ok"] is True


FILE = """\
log_level = "INFO"   # comment
[carrier]
host = "smsc"

[[accounts]]
system_id = "acme"
numbers = [
  "+14155550100",
  "x = y",
]
password = "secret"

[[accounts]]
system_id = "other"
password = "toolongpassword"

[[accounts.programs]]
name = "alerts"
category = "bogus"

[optout.keywords]
stop = ["QUIT"]
optout.replies.stop = "dotted"
"""


@pytest.mark.parametrize("loc, line", [
    (("log_level",), 1), (("carrier", "host"), 3), (("carrier", "port"), 2),
    (("accounts", 0, "password"), 11), (("accounts", 1, "password"), 15), (("accounts", 1), 13),
    (("accounts", 1, "programs", 0, "category"), 19), (("accounts", 0, "numbers", 1), 7),
    (("optout",), 21), (("optout", "keywords", "stop"), 22), (("routing",), None),
])
def test_locate(loc: tuple[str | int, ...], line: int | None) -> None:
    assert locate(FILE, loc) == line


def test_locate_hints_for_tables_of_all_accounts_and_keywords() -> None:
    assert refine(("optout",), "keyword 'STOP' is reserved for op stop, not help") == ("optout", "keywords", "help")
    assert refine(("optout",), "keyword 'X' is in both op stop and op help") == ("optout", "keywords", "help")
    assert refine(("accounts", 1), "whatever op") == ("accounts", 1)
    assert account_line(FILE, "accounts: system_id 'other' is listed twice") == 14
    assert account_line(FILE, "accounts: nothing quoted") is None
