"""check-config refuses bad compliance input: one line each, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway import cli

HEAD = '[[accounts]]\nsystem_id = "acme"\npassword = "pw"\nnumbers = ["+14155550100", "+14155550101"]\n'


def check(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> \
        tuple[int, list[str]]:
    for key in [k for k in __import__("os").environ if k.startswith("GATEWAY_")]:
        monkeypatch.delenv(key)
    toml = tmp_path / "gw.toml"
    toml.write_text(text)
    code = cli.main(["check-config", "--config", str(toml)])
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line.startswith("config error:")]


GOOD = HEAD + """
[[accounts.programs]]
name = "alerts"
category = "transactional"
numbers = ["+14155550100"]
[[accounts.programs]]
name = "promo"
category = "marketing"
service_types = ["MKT"]
default = true
quiet_hours = "defer"
[[optout.programs.keywords]]
program = "promo"
stop = ["STOP PROMO"]
start = ["PROMO"]
[optout.programs.quiet_hours.countries]
FR = [{start = "08:00", end = "22:00", days = ["mon", "tue", "wed", "thu", "fri", "sat"]}]
"""


@pytest.mark.parametrize(("text", "needle"), [
    (HEAD + '[[accounts.programs]]\nname = "promo"\n', "category"),
    (HEAD + '[[accounts.programs]]\nname = "a"\ncategory = "marketing"\nnumbers = ["+14155550100"]\n'
            '[[accounts.programs]]\nname = "b"\ncategory = "transactional"\nnumbers = ["4155550100"]\n',
     "claimed by programs 'a' and 'b'"),
    (HEAD + '[[accounts.programs]]\nname = "a"\ncategory = "marketing"\nservice_types = ["X"]\n'
            '[[accounts.programs]]\nname = "b"\ncategory = "marketing"\nservice_types = ["X"]\n',
     "service_type X is claimed"),
    (HEAD + '[optout.programs.quiet_hours]\ndefault = [{start = "21:00", end = "08:00"}]\n', "ends before it starts"),
    (HEAD + '[optout.programs.quiet_hours.states]\nZZ = [{start = "08:00", end = "20:00"}]\n', "unknown US state"),
    (HEAD + '[optout.programs.quiet_hours.countries]\nXX = [{start = "08:00", end = "20:00"}]\n', "unknown country"),
    (HEAD + '[optout.programs.quiet_hours.holidays]\nUS-QQ = [2026-12-25]\n', "unknown country or state"),
    (GOOD + '[[optout.programs.keywords]]\nprogram = "alerts"\nstop = ["optout"]\n', "'OPTOUT' of program 'alerts' is a stop"),
    (GOOD + '[[optout.languages]]\nlanguage = "es"\nstop = ["PARAR"]\n[[optout.programs.keywords]]\nprogram = "promo"\n'
            'start = ["parar"]\n', "'PARAR' of program 'promo' is a stop keyword"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, text: str, needle: str,
                                          capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    code, lines = check(tmp_path, text, capsys, monkeypatch)
    assert code == 2
    assert len(lines) == 1, lines
    assert needle in lines[0]


def test_good_programs_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                            monkeypatch: pytest.MonkeyPatch) -> None:
    code, lines = check(tmp_path, GOOD, capsys, monkeypatch)
    assert (code, lines) == (0, [])


def test_config_version_follows_program_keywords_and_revoke_all() -> None:
    from gateway.policy.settings import OptoutSettings

    plain = OptoutSettings()
    with_keywords = OptoutSettings.model_validate({"programs": {"keywords": [{"program": "promo", "stop": ["NOPROMO"]}]}})
    revoke_off = OptoutSettings.model_validate({"revoke_all": {"enabled": False}})
    quiet = OptoutSettings.model_validate({"programs": {"quiet_hours": {"default_zone": "America/Chicago"}}})
    assert len({plain.config_version, with_keywords.config_version, revoke_off.config_version}) == 3
    assert quiet.config_version == plain.config_version  # quiet hours are no keyword or reply setting
