"""Feeder names and the feeder cache, importable cheaply (standard library only).

Resolving a feeder name, listing the valid names and finding a cached conversion import
neither pandapower nor simbench (nor pandas): they are imported only when
:func:`load_feeder` actually reads a cache or converts a network
(:mod:`transactive.grid.feeders`).
"""

from __future__ import annotations

import difflib
import hashlib
import os
from functools import cache
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

from transactive.errors import UnknownFeederError
from transactive.grid._simbench_codes import SIMBENCH_CODES

if TYPE_CHECKING:
    from transactive.grid.model import Feeder

__all__ = [
    "CONVERTER_VERSION",
    "PANDAPOWER_NETWORKS",
    "available_feeders",
    "cache_dir",
    "cache_path",
    "check_name",
    "load_feeder",
]

#: Version of the pandapower → Feeder conversion; part of the cache key.
CONVERTER_VERSION = "4"
#: The pandapower built-in networks by registry name (their constructors are looked up in
#: :mod:`transactive.grid.feeders` when one is converted).
PANDAPOWER_NETWORKS: tuple[str, ...] = (
    "pandapower:cigre_lv",
    "pandapower:cigre_mv",
    "pandapower:cigre_mv_pv_wind",
    "pandapower:case33bw",
    "pandapower:kerber_dorfnetz",
    "pandapower:kerber_landnetz_freileitung_1",
    "pandapower:kerber_landnetz_freileitung_2",
    "pandapower:kerber_landnetz_kabel_1",
    "pandapower:kerber_landnetz_kabel_2",
    "pandapower:kerber_vorstadtnetz_kabel_1",
    "pandapower:kerber_vorstadtnetz_kabel_2",
    "pandapower:lv_schutterwald",
)
_SIMBENCH = frozenset(SIMBENCH_CODES)


def available_feeders() -> list[str]:
    """All names accepted by :func:`load_feeder` (pandapower built-ins, then SimBench)."""
    return [*PANDAPOWER_NETWORKS, *(f"simbench:{c}" for c in SIMBENCH_CODES)]


def check_name(name: str) -> None:
    """Raise UnknownFeederError (with close matches and the valid names) unless ``name`` is
    a registry name."""
    if name in PANDAPOWER_NETWORKS:
        return
    if name.startswith("simbench:") and name.removeprefix("simbench:") in _SIMBENCH:
        return
    names = available_feeders()
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    lv_mv = [n for n in names if n.startswith("simbench:1-") and n.endswith("--0-sw")]
    raise UnknownFeederError(
        f"unknown feeder {name!r}.{hint} Available: {', '.join(PANDAPOWER_NETWORKS)}; "
        f"and 'simbench:<code>' for the {len(SIMBENCH_CODES)} SimBench codes, e.g. "
        f"{', '.join(lv_mv)} (all: transactive.grid.available_feeders())."
    )


def cache_dir() -> Path:
    """Directory of the feeder cache (``$TRANSACTIVE_CACHE_DIR`` or the user cache dir)."""
    root = os.environ.get("TRANSACTIVE_CACHE_DIR")
    if not root:
        import platformdirs

        root = platformdirs.user_cache_dir("transactive")
    return Path(root) / "feeders"


@cache
def _library_versions() -> str:
    return f"{CONVERTER_VERSION}|{version('pandapower')}|{version('simbench')}"


def cache_path(name: str) -> Path:
    """Cache directory of one feeder: keyed by name, converter and library versions (read
    from package metadata, without importing the libraries)."""
    key = hashlib.sha256(f"{name}|{_library_versions()}".encode()).hexdigest()[:12]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return cache_dir() / f"{safe}-{key}"


def load_feeder(name: str, *, use_cache: bool = True) -> Feeder:
    """Load a feeder by registry name, e.g. ``pandapower:cigre_lv`` or
    ``simbench:1-LV-rural1--0-sw``; raises UnknownFeederError listing the valid names.

    A cached conversion is read from parquet; otherwise the network is converted
    (pandapower / simbench are imported only then) and cached."""
    check_name(name)
    from transactive.grid import feeders  # pandas; pandapower only inside a conversion

    path = cache_path(name)
    if use_cache and (path / "meta.json").exists():
        return feeders.read_cache(path)
    feeder = feeders.convert(name)
    if use_cache:
        feeders.write_cache(feeder, path)
    return feeder
