"""Grid test fixtures: a per-session feeder cache directory and one SimBench feeder."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from transactive.grid import Feeder, load_feeder

SIMBENCH_NAME = "simbench:1-LV-rural1--0-sw"


@pytest.fixture(scope="session", autouse=True)
def grid_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point TRANSACTIVE_CACHE_DIR at a fresh directory so tests work on a clean machine."""
    path = tmp_path_factory.mktemp("feeder-cache")
    old = os.environ.get("TRANSACTIVE_CACHE_DIR")
    os.environ["TRANSACTIVE_CACHE_DIR"] = str(path)
    warnings.filterwarnings("ignore", module="pandapower")
    yield path
    if old is None:
        os.environ.pop("TRANSACTIVE_CACHE_DIR", None)
    else:
        os.environ["TRANSACTIVE_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def simbench_feeder(grid_cache_dir: Path) -> Feeder:
    """The one SimBench grid loaded in the test suite (with its yearly profiles)."""
    return load_feeder(SIMBENCH_NAME)
