"""The node tree as a record table: a lossless round trip, and bad tables named by row."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_tree import three_area_tree

from transactive.errors import InvalidInputError
from transactive.nodes.tables import tree_from_table, tree_table


def test_round_trip_keeps_every_node_field(tmp_path) -> None:  # type: ignore[no-untyped-def]
    tree = three_area_tree(sub_limit=50.0)[0].tree
    tree_table(tree).to_parquet(tmp_path / "nodes.parquet", index=False)
    back = tree_from_table(pd.read_parquet(tmp_path / "nodes.parquet"))
    for field in ("id", "kind", "parent", "owner", "area", "bus"):
        assert np.array_equal(getattr(back, field), getattr(tree, field)), field
    assert np.array_equal(back.import_limit, tree.import_limit)  # inf survives
    assert np.isinf(back.import_limit).any()


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("kind", "castle", "row 3, column kind: 'castle'"),
        ("parent_id", "nowhere", "row 3, column parent_id: 'nowhere' is not a node_id"),
        ("bus", "x", "row 3, column bus"),
        ("node_id", "tso", "node_id 'tso' appears twice"),
    ],
)
def test_bad_table_names_row_and_column(column: str, value: str, message: str) -> None:
    table = tree_table(three_area_tree()[0].tree).astype({column: object})
    table.loc[2, column] = value
    with pytest.raises(InvalidInputError, match=message.replace("(", r"\(")):
        tree_from_table(table, "nodes.parquet")


def test_child_before_parent_is_refused() -> None:
    table = tree_table(three_area_tree()[0].tree)
    with pytest.raises(InvalidInputError, match="before its parent"):
        tree_from_table(table.iloc[[0, 2, 1, *range(3, len(table))]])
