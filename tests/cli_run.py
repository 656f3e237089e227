"""Run `transactive` as a user does: a fresh interpreter, stdout and stderr captured (so a C
library printing to stdout is caught), no colours, a wide terminal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def cli(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`transactive ARGS` in a subprocess."""
    env = {**os.environ, "COLUMNS": "160", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "transactive.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=600,
    )
