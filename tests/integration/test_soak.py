"""The chaos soak end to end (a 60-second run with a fixed seed), and its checker against a
deliberately broken gateway: both as subprocesses, as an operator runs `make soak`."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.pg import pg_dsn, pg_dsn_or_skip

ROOT = Path(__file__).resolve().parents[2]
LAST = re.compile(r"^soak: (\d+) submitted, (\d+) delivered, (\d+) lost, (\d+) duplicated, "
                  r"(\d+) faults injected, (\d+) invariants broken$")


def soak(tmp_path: Path, *args: str, timeout: float) -> tuple[int, str, tuple[int, ...]]:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.soak", "--dsn", pg_dsn(), "--logdir", str(tmp_path), *args],
        check=False, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    lines = proc.stdout.strip().splitlines()
    assert lines, proc.stderr[-3000:]
    match = LAST.match(lines[-1])
    assert match, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.returncode, proc.stdout, tuple(int(n) for n in match.groups())


@pytest.mark.timeout(420)
async def test_sixty_second_soak_with_a_fixed_seed_loses_nothing(tmp_path: Path) -> None:
    await pg_dsn_or_skip()
    code, out, (submitted, delivered, lost, _, faults, broken) = soak(
        tmp_path, "--duration", "60", "--seed", "14", "--fault-interval", "4", timeout=400)
    assert (lost, broken, code) == (0, 0, 0), out
    assert submitted > 1000 and delivered > submitted and faults >= 5, out
    assert "soak seed 14" in out


@pytest.mark.timeout(240)
async def test_checker_reports_a_gateway_that_drops_every_hundredth_mo(tmp_path: Path) -> None:
    await pg_dsn_or_skip()
    code, out, (_, _, lost, _, faults, broken) = soak(
        tmp_path, "--duration", "15", "--seed", "3", "--fault-interval", "100000",
        "--drop-mo-every", "100", "--settle", "40", timeout=220)
    assert code == 1 and lost > 0 and broken > 0 and faults == 0, out
    assert re.search(r"BROKEN: \d+ ESME_ROK'd MO never acked by an application", out), out
