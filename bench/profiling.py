"""Turn a profile of the gateway into a short list of hot spots.

py-spy: `py-spy record --format raw` writes collapsed stacks ("f (file:line);g (...) N");
we sum samples per leaf function (self) and per function anywhere on the stack (total).
cProfile: the pstats top entries by own time.
"""

from __future__ import annotations

import io
import pstats
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def py_spy_path() -> str | None:
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else shutil.which("py-spy")


def start_py_spy(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    exe = py_spy_path()
    if exe is None:
        print("py-spy not found: `.venv/bin/pip install py-spy`", file=sys.stderr)
        return None
    cmd = [exe, "record", "--pid", str(pid), "--duration", str(max(1, int(seconds))), "--rate", "250",
           "--format", "raw", "--nonblocking", "-o", str(out)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _name(frame: str) -> str:
    m = FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m.group("file")
    for marker in ("/gateway/", "/site-packages/", "/lib/python"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{m.group('func')} ({path})"


def summarize_py_spy(raw: Path, top: int = 25) -> str:
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_name(f) for f in stack.split(";") if f and not f.startswith("process ")]
        if not frames:
            continue
        samples += n
        own[frames[-1]] += n
        for f in set(frames):
            total[f] += n
    if not samples:
        return "py-spy: no samples"
    out = [f"py-spy: {samples} samples of the gateway process (self = on top of the stack)",
           f"{'self%':>6} {'total%':>7}  function"]
    for f, n in own.most_common(top):
        out.append(f"{100 * n / samples:6.1f} {100 * total[f] / samples:7.1f}  {f}")
    out.append("")
    out.append("gateway functions by total (inclusive) time:")
    for f, n in total.most_common():
        if "gateway" in f or ".py)" in f and "/" not in f:
            out.append(f"{100 * n / samples:6.1f}%  {f}")
        if len(out) > 2 * top + 6:
            break
    return "\n".join(out)


def summarize_cprofile(path: Path, top: int = 30) -> str:
    buf = io.StringIO()
    stats = pstats.Stats(str(path), stream=buf)
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    return buf.getvalue()
