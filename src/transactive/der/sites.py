"""The weather sites a scenario can name (standard library only, so scenario validation
does not load the weather readers)."""

from __future__ import annotations

#: Weather sites: name → (file, kind). ``tmy3``/``tmy2``: pvlib's files; ``try``: the DWD
#: test reference years 2010 shipped in ``transactive/data/de/try2010``.
SITES: dict[str, tuple[str, str]] = {
    "greensboro": ("723170TYA.CSV", "tmy3"),
    "sand_point": ("703165TY.csv", "tmy3"),
    "miami": ("12839.tm2", "tmy2"),
    **{f"de-try-{r:02d}": (f"TRY2010_{r:02d}_Jahr.dat.gz", "try") for r in range(1, 16)},
}
