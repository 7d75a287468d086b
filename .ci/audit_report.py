"""Reads pip-audit's JSON for each lock (written by .ci/audit) and applies the policy:
exit 1 for a known vulnerability in requirements.lock, otherwise one line per outcome, exit 0."""

import json
import sys
from pathlib import Path

LOCKS = (("requirements.lock", True), ("requirements-test.lock", False))  # (file, ships)


def report(out: Path) -> int:
    lines: list[str] = []
    unreachable = 0
    failed = False
    for lock, ships in LOCKS:
        try:
            deps = json.loads((out / f"{lock}.json").read_text())["dependencies"]
        except (OSError, ValueError, KeyError, TypeError):
            deps = None
        audited = [d for d in deps or [] if "skip_reason" not in d]
        if not audited:  # no answer at all, or "not found" for every package
            unreachable += 1
            lines.append(f"pip-audit: skipped: {lock}: no vulnerability data reached (see {out}/{lock}.log)")
            continue
        found = [f"{d['name']} {d['version']}: {v['id']} (fixed in {', '.join(v.get('fix_versions') or ['-'])})"
                 for d in audited for v in d.get("vulns", [])]
        unaudited = len(deps or []) - len(audited)
        note = f", {unaudited} not audited" if unaudited else ""
        if not found:
            lines.append(f"pip-audit: {lock}: {len(audited)} packages, no known vulnerabilities{note}")
        level = "FAIL" if ships else "warning (test tooling only)"
        lines += [f"pip-audit: {level}: {lock}: {line}" for line in found]
        failed = failed or (ships and bool(found))
    if unreachable == len(LOCKS):
        lines = ["pip-audit: skipped: the vulnerability data could not be reached from here"]
    print("\n".join(lines))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(report(Path(sys.argv[1])))
