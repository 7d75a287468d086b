"""The gateway under cProfile: `python -m bench.gwprofile OUT.prof run [gateway args]`.

Runs `gateway.cli.main` in this process and writes the profile to OUT.prof when the
gateway exits (SIGTERM stops it gracefully, so the stats are always written).
"""

from __future__ import annotations

import cProfile
import sys


def main() -> int:
    out, argv = sys.argv[1], sys.argv[2:]
    from gateway.cli import main as gateway_main

    profile = cProfile.Profile()
    try:
        rc = profile.runcall(gateway_main, argv)
    finally:
        profile.dump_stats(out)
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
