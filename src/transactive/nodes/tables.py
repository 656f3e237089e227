"""The node tree as a record table (``nodes``), so that settlement can run on written
records without the simulator: one row per node, parents first.

==================  =========  ====  ================================================
``node_id``         str              node id (unique)
``kind``            str              tso | dso | feeder | microgrid | home | aggregator
``parent_id``       str              parent node id (empty for the root)
``participant_id``  str              owner of the node (who settles its meter)
``area``            int64            index of the DSO area (−1 above the areas)
``bus``             int64            bus position in the area's feeder (−1: not physical)
``import_limit_kw`` float64    kW    import limit (inf: none)
``export_limit_kw`` float64    kW    export limit (inf: none)
==================  =========  ====  ================================================
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from transactive.errors import InvalidInputError
from transactive.nodes.tree import Kind, Tree

COLUMNS = (
    "node_id",
    "kind",
    "parent_id",
    "participant_id",
    "area",
    "bus",
    "import_limit_kw",
    "export_limit_kw",
)
_KINDS = {str(k) for k in Kind}


def tree_table(tree: Tree) -> pd.DataFrame:
    """The ``nodes`` table of ``tree`` (columns :data:`COLUMNS`, parents first)."""
    parent = np.where(tree.parent >= 0, tree.id[np.maximum(tree.parent, 0)], "")
    return pd.DataFrame(
        {
            "node_id": tree.id.astype(str),
            "kind": tree.kind.astype(str),
            "parent_id": parent.astype(str),
            "participant_id": tree.owner.astype(str),
            "area": tree.area.astype(np.int64),
            "bus": tree.bus.astype(np.int64),
            "import_limit_kw": tree.import_limit.astype(np.float64),
            "export_limit_kw": tree.export_limit.astype(np.float64),
        }
    )


def tree_from_table(nodes: pd.DataFrame, source: str = "nodes") -> Tree:
    """The tree of a ``nodes`` table; errors name ``source`` and the offending row (1-based,
    as in the file) and column."""
    missing = [c for c in COLUMNS if c not in nodes.columns]
    if missing:
        raise InvalidInputError(f"{source}: missing columns {missing}")
    ids = nodes["node_id"].astype(str).to_numpy(dtype=object)
    kind = nodes["kind"].astype(str).to_numpy(dtype=object)
    bad = [i for i, k in enumerate(kind) if k not in _KINDS]
    if bad:
        raise InvalidInputError(
            f"{source}: row {bad[0] + 1}, column kind: {kind[bad[0]]!r} is not one of "
            f"{sorted(_KINDS)}"
        )
    parent_id = nodes["parent_id"].fillna("").astype(str).to_numpy(dtype=object)
    pos = pd.Index(ids)
    if not pos.is_unique:
        dup = pos[pos.duplicated()][0]
        raise InvalidInputError(f"{source}: node_id {dup!r} appears twice")
    parent = np.where(parent_id == "", -1, pos.get_indexer(parent_id))
    unknown = np.flatnonzero((parent_id != "") & (parent < 0))
    if unknown.size:
        i = int(unknown[0])
        raise InvalidInputError(
            f"{source}: row {i + 1}, column parent_id: {parent_id[i]!r} is not a node_id"
        )
    numbers = {}
    for col in ("area", "bus", "import_limit_kw", "export_limit_kw"):
        values = pd.to_numeric(nodes[col], errors="coerce").to_numpy(dtype=float)
        finite_or_inf = ~np.isnan(values)
        if col in ("area", "bus"):
            finite_or_inf &= np.isfinite(values) & (values == np.round(values))
        if not finite_or_inf.all():
            i = int(np.flatnonzero(~finite_or_inf)[0])
            raise InvalidInputError(
                f"{source}: row {i + 1}, column {col}: {nodes[col].iloc[i]!r} is not a number"
            )
        numbers[col] = values
    try:
        return Tree(
            id=ids,
            kind=kind,
            parent=parent.astype(np.int64),
            owner=nodes["participant_id"].astype(str).to_numpy(dtype=object),
            area=numbers["area"].astype(np.int64),
            bus=numbers["bus"].astype(np.int64),
            import_limit=numbers["import_limit_kw"],
            export_limit=numbers["export_limit_kw"],
        )
    except InvalidInputError as exc:
        raise InvalidInputError(f"{source}: {exc}") from None
