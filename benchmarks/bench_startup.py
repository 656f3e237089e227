"""Start-up time of the CLI: ``--help`` and bad-input paths, best and median of repeated runs
in fresh processes (the 0.5 s target of the engine-tree issue).

    .venv/bin/python benchmarks/bench_startup.py [--runs N]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).parents[1]
BAD_SCENARIO = """feeder = "simbench:1-LV-semiurb4--0-sw"
start = "2016-07-12T00:00:00Z"
end = "2016-07-13T00:00:00Z"
colour = "red"
[der.config.pv]
capacity_kw = -1
"""


def main() -> None:
    runs = int(sys.argv[sys.argv.index("--runs") + 1]) if "--runs" in sys.argv else 7
    exe = str(Path(sys.executable).parent / "transactive")
    with tempfile.TemporaryDirectory() as tmp:
        bad = Path(tmp) / "bad.toml"
        bad.write_text(BAD_SCENARIO)
        cases = [
            ["--help"],
            ["clear", "missing.csv"],
            ["clear", str(ROOT / "examples")],
            ["simulate", "missing.toml"],
            ["simulate", str(bad)],
            ["clear-network", "pandapower:nope", str(ROOT / "examples" / "network-bids.csv")],
            ["hosting-capacity", "simbench:nope"],
        ]
        print(f"{'command':<58}{'exit':>5}{'best s':>8}{'median s':>10}")
        for args in cases:
            times, code = [], 0
            for _ in range(runs):
                t0 = time.perf_counter()
                code = subprocess.run([exe, *args], capture_output=True, check=False).returncode
                times.append(time.perf_counter() - t0)
            label = " ".join(a.replace(str(ROOT) + "/", "").replace(tmp + "/", "") for a in args)
            print(f"{label:<58}{code:>5}{min(times):>8.2f}{statistics.median(times):>10.2f}")


if __name__ == "__main__":
    main()
