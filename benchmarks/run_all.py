"""Run every benchmark script in this folder (``make bench``), one after the other.

Each ``bench_*.py`` prints its own table of wall times and peak memory. Benchmarks measure;
they never assert a time (speed targets are checked by reading these numbers).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def main() -> int:
    here = Path(__file__).parent
    failed = 0
    for script in sorted(here.glob("bench_*.py")):
        print(f"\n== {script.name} ==", flush=True)
        failed += subprocess.call([sys.executable, str(script), *sys.argv[1:]]) != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
