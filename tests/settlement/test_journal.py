"""The journal: canonical storage, append-only batches, signed heads, proofs checked by the
independent RFC 9162 verifier of test_merkle, participant bundles, and tamper evidence over
random logs and random tamperings (each detected, the first bad record named)."""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st
from test_merkle import ref_leaf, ref_mth, ref_verify_consistency, ref_verify_inclusion

from transactive.errors import InvalidInputError
from transactive.settlement import journal as J
from transactive.settlement import merkle

OPERATOR = J.operator_key("test operator")
ATTACKER = J.operator_key("someone else")
T0 = "2026-03-02T10:00:00Z"


def make_record(i: int, participant: str = "home-1", q: float = 1.5) -> dict[str, Any]:
    return {
        "id": f"rec-{i:05d}",
        "kind": "meter_reading",
        "participant_id": participant,
        "resource_id": f"meter-{participant}",
        "node_id": "lv1.bus3",
        "interval_start": "2026-03-02T10:15:00Z",
        "duration_h": 0.25,
        "quantity_kwh": q,
        "currency": "EUR",
    }


def stamp(k: int) -> str:
    return f"2026-03-02T{10 + k // 60:02d}:{k % 60:02d}:00Z"


def build(path: Path, records: list[dict[str, Any]], head_sizes: list[int]) -> J.Journal:
    """A journal of ``records`` with a head signed whenever the size reaches a head size."""
    jr = J.open_journal(path, create=True, operator_public_key=OPERATOR.public_key())
    done = 0
    for k, size in enumerate(sorted(set(head_sizes))):
        jr.append(records[done:size])
        done = size
        jr.sign_head(OPERATOR, stamp(k))
    jr.append(records[done:])
    return jr


# --- canonical JSON ------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**60), 2**60)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.floats(-1e-3, 1e-3)
    | st.floats(-1e22, 1e22)
    | st.integers(-1000, 1000).map(float)
    | st.text()
    | st.sampled_from(["\ud800", "a\udfffb", "\u2028", "\x7f", "\x1f", '"\\', "é", "😀"])
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.text(max_size=5) | st.sampled_from(["é", "😀", "\uffff", "a"]), inner, max_size=4
        )
    ),
    max_leaves=12,
)


@given(json_values)
def test_canonical_json_is_byte_identical_to_rfc8785(value: Any) -> None:
    try:
        want = rfc8785.dumps(value)
    except Exception:  # whatever rfc8785 refuses, canonical_json refuses too
        with pytest.raises(InvalidInputError):
            J.canonical_json(value)
        return
    assert J.canonical_json(value) == want


flat_records = st.dictionaries(
    st.sampled_from(["id", "kind", "q", "price", "n", "note", "x"]),
    st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(-(2**55), 2**55)
    | st.text(max_size=8),
    max_size=7,
)


@given(flat_records)
def test_the_fast_path_of_flat_records_is_rfc8785(record: dict[str, Any]) -> None:
    try:
        want = rfc8785.dumps(record)
    except Exception:
        with pytest.raises(InvalidInputError):
            J.canonical_json(record)
        return
    assert J.canonical_json(record) == want
    assert J.canonical_batch([record, record]) == b"[" + want + b"," + want + b"]"


@pytest.mark.parametrize("key", [1, 1.5, True, None])
def test_keys_that_are_not_strings_are_refused_like_rfc8785(key: Any) -> None:
    record = {"id": "a", "kind": "k", key: 1}
    with pytest.raises(Exception):  # noqa: B017 (rfc8785's own error class)
        rfc8785.dumps(record)
    with pytest.raises(InvalidInputError):
        J.canonical_json(record)
    with pytest.raises(InvalidInputError):
        J.canonical_many([make_record(0), record])


@given(st.lists(json_values | flat_records, max_size=6))
def test_canonical_many_is_rfc8785_of_each(values: list[Any]) -> None:
    """The batch encoder of append: one text check for the batch, the same bytes."""
    try:
        want = [rfc8785.dumps(v) for v in values]
    except Exception:
        with pytest.raises(InvalidInputError):
            J.canonical_many(values)
        return
    assert J.canonical_many(values) == want


# --- appending and reading -------------------------------------------------------------------


def test_append_stores_canonical_bytes_and_indices(tmp_path: Path) -> None:
    jr = J.open_journal(tmp_path / "j.sqlite", create=True)
    recs = [make_record(i, q=float(i)) for i in range(5)]
    assert jr.append(recs[:3]) == [0, 1, 2]
    assert jr.append(recs[3:]) == [3, 4]
    index, data = jr.entry("rec-00003")
    assert index == 3 and data == rfc8785.dumps(recs[3])
    assert jr.record("rec-00003") == json.loads(rfc8785.dumps(recs[3]))
    assert [i for i, _ in jr.records(kind="meter_reading", limit=2)] == [0, 1]
    assert jr.root() == ref_mth([rfc8785.dumps(r) for r in recs])


@given(st.lists(st.integers(0, 9), min_size=1, max_size=6), st.integers(0, 2))
@settings(max_examples=30)
def test_root_and_proofs_do_not_depend_on_batches_or_reopening(
    tmp_path_factory: pytest.TempPathFactory, batches: list[int], reopen_every: int
) -> None:
    path = tmp_path_factory.mktemp("j") / "j.sqlite"
    records = [make_record(i, q=i / 7) for i in range(sum(batches))]
    jr = J.open_journal(path, create=True)
    done = 0
    for k, b in enumerate(batches):
        jr.append(records[done : done + b])
        done += b
        if reopen_every and k % reopen_every == 0:
            jr.close()
            jr = J.open_journal(path)
    entries = [rfc8785.dumps(r) for r in records]
    assert jr.size == len(records)
    assert jr.root() == ref_mth(entries)
    for size in range(len(records) + 1):
        assert jr.root(size) == ref_mth(entries[:size])
    jr.close()


@given(st.lists(st.integers(0, 150), min_size=1, max_size=5), st.booleans(), st.data())
@settings(max_examples=20, deadline=None)
def test_stored_and_block_hashed_subtrees_are_the_tree(
    tmp_path_factory: pytest.TempPathFactory, batches: list[int], reopen: bool, data: Any
) -> None:
    """Subtrees of 64 leaves and more are stored, lower ones hashed from the leaf blocks
    (the last one partial, rewritten as it fills): every complete subtree, every root,
    proof and the stored rows agree with the tree of the records, over batches that cross
    block boundaries anywhere, with the journal reopened between batches or not."""
    path = tmp_path_factory.mktemp("j") / "j.sqlite"
    records = [make_record(i, q=i / 7) for i in range(sum(batches))]
    jr = J.open_journal(path, create=True, operator_public_key=OPERATOR)
    done = 0
    for k, b in enumerate(batches):
        jr.append(records[done : done + b])
        done += b
        jr.sign_head(OPERATOR, stamp(k))
        if reopen:
            jr.close()
            jr = J.open_journal(path)
    entries = [rfc8785.dumps(r) for r in records]
    n = len(entries)
    if n:
        levels = merkle.build_levels(merkle.leaf_hashes(entries))
        keys = [(k, i) for k, lv in enumerate(levels) for i in range(len(lv))]
        assert jr.nodes(keys) == merkle.MemoryNodes(levels).nodes(keys)
        leaf_rows, node_rows = J.stored_rows(merkle.leaf_hashes(entries))
        conn = sqlite3.connect(path)
        assert conn.execute("SELECT * FROM journal_leaves ORDER BY block").fetchall() == leaf_rows
        assert conn.execute("SELECT * FROM journal_nodes ORDER BY node").fetchall() == sorted(
            node_rows
        )
        conn.close()
        assert len(leaf_rows) == -(-n // J.BLOCK)
        assert {J._key_level_index(np.array([k]))[0][0] for k, _ in node_rows} <= set(
            range(J.BLOCK_LEVEL, 64)
        )
    heads = jr.heads()
    for h in heads:
        assert h.root_hash == ref_mth(entries[: h.tree_size])
        for i in data.draw(st.lists(st.integers(0, max(h.tree_size - 1, 0)), max_size=4)):
            if h.tree_size:
                proof = jr.inclusion_proof(records[i]["id"], h)
                leaf = ref_leaf(entries[i])
                assert ref_verify_inclusion(i, h.tree_size, leaf, proof, h.root_hash)
        new = heads[-1]
        proof = jr.consistency_proof(h.tree_size, new.tree_size)
        if 0 < h.tree_size < new.tree_size:
            assert ref_verify_consistency(
                h.tree_size, new.tree_size, h.root_hash, new.root_hash, proof
            )
    assert jr.verify().ok
    jr.close()


def test_a_damaged_partial_leaf_block_refuses_appends(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    build(path, [make_record(i) for i in range(70)], []).close()
    sql(path, ("UPDATE journal_leaves SET hashes = ? WHERE block = 1", (b"\0" * 32,)))
    with J.open_journal(path) as jr, pytest.raises(InvalidInputError, match="records 64"):
        jr.append([make_record(70)])


def test_duplicate_ids_and_bad_records_reject_the_whole_batch(tmp_path: Path) -> None:
    jr = J.open_journal(tmp_path / "j.sqlite", create=True)
    jr.append([make_record(0), make_record(1)])
    root = jr.root()
    cases: list[tuple[list[Any], str]] = [
        ([make_record(2), make_record(1)], "'rec-00001' is already in the journal"),
        ([make_record(2), make_record(2)], "'rec-00002' appears twice"),
        ([make_record(2), {"kind": "x"}], "record 1 has no string 'id'"),
        ([make_record(2), {"id": "a"}], "record 'a' has no string 'kind'"),
        ([make_record(2), make_record(3, q=math.nan)], "record 'rec-00003'"),
        ([make_record(2), {**make_record(3), "n": 2**60}], "record 'rec-00003'"),
        ([make_record(2), ["not", "a", "dict"]], "record 1 is a list"),
    ]
    for batch, message in cases:
        with pytest.raises(InvalidInputError, match=message):
            jr.append(batch)
        assert jr.size == 2 and jr.root() == root  # nothing half-stored
    jr.close()
    again = J.open_journal(tmp_path / "j.sqlite")
    assert again.size == 2 and again.root() == root
    assert again.verify(OPERATOR.public_key()).ok


def test_open_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="no such journal"):
        J.open_journal(tmp_path / "missing.sqlite")
    (tmp_path / "text.sqlite").write_text("hello")
    with pytest.raises(InvalidInputError, match="not an SQLite file"):
        J.open_journal(tmp_path / "text.sqlite")
    other = sqlite3.connect(tmp_path / "other.sqlite")
    other.execute("CREATE TABLE t (x)")
    other.commit()
    other.close()
    with pytest.raises(InvalidInputError, match="not a journal"):
        J.open_journal(tmp_path / "other.sqlite")
    old = sqlite3.connect(tmp_path / "v1.sqlite")  # the format before leaf blocks
    old.execute("CREATE TABLE journal_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
    old.execute("INSERT INTO journal_meta VALUES ('format', 'transactive-journal/1')")
    old.commit()
    old.close()
    with pytest.raises(InvalidInputError, match="format transactive-journal/1; this version"):
        J.open_journal(tmp_path / "v1.sqlite")
    J.open_journal(tmp_path / "j.sqlite", create=True).close()
    with pytest.raises(InvalidInputError, match="already exists"):
        J.open_journal(tmp_path / "j.sqlite", create=True)


def test_keys(tmp_path: Path) -> None:
    seed = bytes(range(32))
    assert J.public_bytes(J.operator_key(seed)) == J.public_bytes(J.operator_key(seed.hex()))
    (tmp_path / "seed.hex").write_text(seed.hex() + "\n")
    assert J.public_bytes(J.operator_key(tmp_path / "seed.hex")) == J.public_bytes(
        J.operator_key(seed)
    )
    pub = J.public_bytes(OPERATOR)
    (tmp_path / "op.pub").write_text(pub.hex())
    assert J.public_bytes(J.load_public_key(tmp_path / "op.pub")) == pub
    (tmp_path / "bad.pub").write_text("not a key")
    with pytest.raises(InvalidInputError, match=r"bad\.pub"):
        J.load_public_key(tmp_path / "bad.pub")
    with pytest.raises(InvalidInputError, match="32 bytes"):
        J.operator_key(b"short")
    jr = J.open_journal(tmp_path / "j.sqlite", create=True, operator_public_key=OPERATOR)
    with pytest.raises(InvalidInputError, match="operator key"):
        jr.sign_head(ATTACKER, T0)  # a journal keeps the key it was created with


def test_heads_proofs_and_the_independent_verifier(tmp_path: Path) -> None:
    records = [make_record(i, f"home-{i % 4}", i / 3) for i in range(37)]
    jr = build(tmp_path / "j.sqlite", records, [5, 16, 30, 37])
    entries = [rfc8785.dumps(r) for r in records]
    heads = jr.heads()
    assert [h.tree_size for h in heads] == [5, 16, 30, 37]
    for h in heads:
        assert h.root_hash == ref_mth(entries[: h.tree_size])
        assert h.signature_ok(OPERATOR.public_key())
        assert not h.signature_ok(ATTACKER.public_key())
        assert J.SignedTreeHead.from_json(json.loads(json.dumps(h.to_json()))) == h
        for i in range(h.tree_size):
            proof = jr.inclusion_proof(records[i]["id"], h)
            assert ref_verify_inclusion(i, h.tree_size, ref_leaf(entries[i]), proof, h.root_hash)
    for old in heads[:-1]:
        proof = jr.consistency_proof(old.tree_size, heads[-1].tree_size)
        assert ref_verify_consistency(
            old.tree_size, heads[-1].tree_size, old.root_hash, heads[-1].root_hash, proof
        )
    with pytest.raises(InvalidInputError, match="newer than the head"):
        jr.inclusion_proof(records[20]["id"], heads[1])
    with pytest.raises(InvalidInputError, match="before the latest head"):
        jr.sign_head(OPERATOR, "2026-03-02T09:00:00Z")
    with pytest.raises(InvalidInputError, match="no time zone"):
        jr.sign_head(OPERATOR, "2026-03-02T12:00:00")
    report = jr.verify()
    assert report.ok and report.signed_size == 37 and report.heads == 4


def test_a_participant_bundle_reveals_only_its_records_and_verifies(tmp_path: Path) -> None:
    records = [make_record(i, f"home-{i % 3}", i * 0.5) for i in range(20)]
    jr = build(tmp_path / "j.sqlite", records, [20])
    bundle = J.export_bundle(jr, "home-1", jr.head())
    text = json.dumps(bundle)
    assert {e["record"]["participant_id"] for e in bundle["records"]} == {"home-1"}
    assert [e["index"] for e in bundle["records"]] == [i for i in range(20) if i % 3 == 1]
    assert "home-0" not in text and "home-2" not in text  # others appear only as hashes
    assert J.verify_bundle(json.loads(text), OPERATOR.public_key()).ok
    head = jr.head()
    for e in bundle["records"]:  # the independent verifier agrees
        leaf = ref_leaf(rfc8785.dumps(e["record"]))
        proof = [bytes.fromhex(p) for p in e["proof"]]
        assert ref_verify_inclusion(e["index"], head.tree_size, leaf, proof, head.root_hash)
    forged = json.loads(text)
    forged["records"][1]["record"]["quantity_kwh"] = 99.0
    report = J.verify_bundle(forged, OPERATOR.public_key())
    assert not report.ok and report.first is not None
    assert report.first.record_id == forged["records"][1]["record"]["id"]
    assert not J.verify_bundle(json.loads(text), ATTACKER.public_key()).ok
    with pytest.raises(InvalidInputError, match="not a journal bundle"):
        J.verify_bundle({"records": []}, OPERATOR.public_key())


# --- tamper evidence ---------------------------------------------------------------------------


def sql(path: Path, *statements: tuple[str, tuple[Any, ...]]) -> None:
    """Edit the file behind the journal's back, as an attacker with the file would."""
    conn = sqlite3.connect(path)
    with conn:
        for statement, args in statements:
            conn.execute(statement, args)
    conn.close()


def stored_block(path: Path, block: int) -> bytes:
    """The stored leaf hashes of one block (64 records)."""
    conn = sqlite3.connect(path)
    row = conn.execute("SELECT hashes FROM journal_leaves WHERE block = ?", (block,)).fetchone()
    conn.close()
    return bytes(row[0])


def verify(path: Path, key: Any = None, head: J.SignedTreeHead | None = None) -> J.VerifyReport:
    with J.open_journal(path) as jr:
        return jr.verify(OPERATOR.public_key() if key is None else key, head)


def first_bad(report: J.VerifyReport) -> tuple[int | None, str | None]:
    assert not report.ok, "tampering not detected"
    first = report.first
    assert first is not None
    return first.index, first.record_id


logs = (st.integers(3, 40) | st.integers(60, 200)).flatmap(
    lambda n: st.tuples(
        st.just(n),
        st.lists(st.integers(1, n), min_size=1, max_size=4).map(lambda s: sorted({*s, n})),
        st.lists(st.floats(0.001, 50), min_size=n, max_size=n),
    )
)


def random_log(tmp: Path, log: tuple[int, list[int], list[float]]) -> tuple[Path, list[Any]]:
    _, heads, qs = log
    records = [make_record(i, f"home-{i % 5}", q) for i, q in enumerate(qs)]
    path = tmp / "j.sqlite"
    build(path, records, heads).close()
    assert verify(path).ok
    return path, records


TAMPER = settings(max_examples=25)


@given(logs, st.data())
@TAMPER
def test_an_edited_byte_is_named(
    tmp_path_factory: pytest.TempPathFactory, log: Any, data: st.DataObject
) -> None:
    path, records = random_log(tmp_path_factory.mktemp("j"), log)
    p = data.draw(st.integers(0, len(records) - 1))
    raw = bytearray(rfc8785.dumps(records[p]))
    at = data.draw(st.integers(0, len(raw) - 1))
    raw[at] = data.draw(st.integers(0, 255).filter(lambda b: b != raw[at]))
    sql(path, ("UPDATE journal_records SET data = ? WHERE seq = ?", (bytes(raw), p)))
    assert first_bad(verify(path)) == (p, records[p]["id"])


@given(logs, st.data(), st.booleans())
@TAMPER
def test_a_deleted_record_is_named(
    tmp_path_factory: pytest.TempPathFactory, log: Any, data: st.DataObject, renumber: bool
) -> None:
    path, records = random_log(tmp_path_factory.mktemp("j"), log)
    p = data.draw(st.integers(0, len(records) - 1))
    edits = [("DELETE FROM journal_records WHERE seq = ?", (p,))]
    if renumber:  # close the gap, as a careful attacker would
        edits += [
            ("UPDATE journal_records SET seq = -(seq - 1) WHERE seq > ?", (p,)),
            ("UPDATE journal_records SET seq = -seq WHERE seq < 0", ()),
        ]
    sql(path, *edits)
    assert first_bad(verify(path))[0] == p


@given(logs, st.data())
@TAMPER
def test_two_swapped_records_are_named(
    tmp_path_factory: pytest.TempPathFactory, log: Any, data: st.DataObject
) -> None:
    path, records = random_log(tmp_path_factory.mktemp("j"), log)
    i = data.draw(st.integers(0, len(records) - 2))
    j = data.draw(st.integers(i + 1, len(records) - 1))
    sql(
        path,
        ("UPDATE journal_records SET seq = -1 WHERE seq = ?", (i,)),
        ("UPDATE journal_records SET seq = ? WHERE seq = ?", (i, j)),
        ("UPDATE journal_records SET seq = ? WHERE seq = -1", (j,)),
    )
    assert first_bad(verify(path)) == (i, records[j]["id"])


@given(logs, st.data())
@TAMPER
def test_an_inserted_record_is_named(
    tmp_path_factory: pytest.TempPathFactory, log: Any, data: st.DataObject
) -> None:
    path, records = random_log(tmp_path_factory.mktemp("j"), log)
    p = data.draw(st.integers(0, len(records)))
    fake = make_record(10_000, "home-1", 0.5)
    sql(
        path,
        ("UPDATE journal_records SET seq = -(seq + 1) WHERE seq >= ?", (p,)),
        ("UPDATE journal_records SET seq = -seq WHERE seq < 0", ()),
        (
            "INSERT INTO journal_records (seq, record_id, kind, participant_id, data)"
            " VALUES (?, ?, ?, ?, ?)",
            (p, fake["id"], fake["kind"], fake["participant_id"], J.canonical_json(fake)),
        ),
    )
    assert first_bad(verify(path)) == (p, fake["id"])


@given(logs, st.data(), st.booleans())
@TAMPER
def test_truncation_is_named(
    tmp_path_factory: pytest.TempPathFactory, log: Any, data: st.DataObject, clean: bool
) -> None:
    path, records = random_log(tmp_path_factory.mktemp("j"), log)
    t = data.draw(st.integers(0, len(records) - 1))
    with J.open_journal(path) as jr:
        saved = jr.head()  # a participant saved the newest head
    if clean:  # every trace removed: a journal of the first t records, heads re-signed
        path = path.with_name("short.sqlite")
        build(path, records[:t], [h for h in log[1] if h <= t]).close()
        assert verify(path).ok  # self-consistent: only the saved head can tell
    else:
        sql(path, ("DELETE FROM journal_records WHERE seq >= ?", (t,)))
    assert first_bad(verify(path, head=saved))[0] == t


def resign(path: Path, records: list[Any], heads: list[int], key: Any, keep: int) -> Path:
    """A rewritten journal: ``records``, its heads of size ≤ ``keep`` copied from ``path``
    (genuine), the later ones signed anew with ``key`` (its public key stored)."""
    with J.open_journal(path) as jr:
        genuine = [h for h in jr.heads() if h.tree_size <= keep]
    out = path.with_name("rewritten.sqlite")
    forged = J.open_journal(out, create=True, operator_public_key=key.public_key())
    done = 0
    for k, size in enumerate(heads):
        forged.append(records[done:size])
        done = size
        if size <= keep:
            h = next(g for g in genuine if g.tree_size == size)
            sql(
                out,
                (
                    "INSERT INTO journal_heads VALUES (?, ?, ?, ?, ?, ?)",
                    (k, h.tree_size, h.root_hash, h.timestamp, h.key_id, h.signature),
                ),
            )
        else:
            forged.sign_head(key, stamp(k))
    forged.append(records[done:])
    forged.close()
    return out


@given(logs, st.data())
@TAMPER
def test_a_tail_resigned_with_another_key_is_named(
    tmp_path_factory: pytest.TempPathFactory, log: Any, data: st.DataObject
) -> None:
    n, heads, _ = log
    path, records = random_log(tmp_path_factory.mktemp("j"), log)
    t = data.draw(st.sampled_from([0, *heads[:-1]]))  # the rewrite starts after a close
    tail = [make_record(i, "home-x", 7.0) for i in range(t, n)]
    out = resign(path, records[:t] + tail, heads, ATTACKER, keep=t)
    assert first_bad(verify(out)) == (t, tail[0]["id"])
    if t > 0:  # the genuine old heads are not the attacker's
        assert verify(out, key=ATTACKER.public_key()).problems
    # trusting the key stored in the file would be trusting the attacker: hence --key
    with J.open_journal(out) as jr:
        assert J.public_bytes(jr.public_key()) == J.public_bytes(ATTACKER)  # type: ignore[arg-type]


@given(logs, st.data())
@TAMPER
def test_history_rewritten_with_the_operator_key_is_caught_by_a_saved_head(
    tmp_path_factory: pytest.TempPathFactory, log: Any, data: st.DataObject
) -> None:
    _, heads, _ = log
    path, records = random_log(tmp_path_factory.mktemp("j"), log)
    with J.open_journal(path) as jr:
        saved = jr.heads()[data.draw(st.integers(0, len(heads) - 1))]
    p = data.draw(st.integers(0, saved.tree_size - 1))
    changed = [*records]
    changed[p] = {**records[p], "quantity_kwh": records[p]["quantity_kwh"] + 1}
    out = resign(path, changed, heads, OPERATOR, keep=-1)
    assert verify(out).ok  # the operator itself rewrote and re-signed everything
    report = verify(out, head=saved)
    assert not report.ok and report.first is not None
    assert report.first.kind == "history-rewritten"
    assert report.first.index is not None and report.first.index <= p < saved.tree_size
    assert f"before record {saved.tree_size}" in report.first.message


def test_a_saved_head_from_someone_else_and_heads_out_of_order(tmp_path: Path) -> None:
    records = [make_record(i) for i in range(6)]
    path = tmp_path / "j.sqlite"
    build(path, records, [3, 6]).close()
    forged = J.sign_tree_head(ATTACKER, 6, bytes(32), T0)
    assert verify(path, head=forged).first.kind == "saved-head-signature"  # type: ignore[union-attr]
    sql(path, ("UPDATE journal_heads SET tree_size = 2 WHERE head_no = 1", ()))
    kinds = {p.kind for p in verify(path).problems}
    assert {"head-order", "head-signature"} <= kinds


@pytest.mark.parametrize(
    ("edit", "kind"),
    [
        (lambda d: d.replace(b'"duration_h":0.25', b'"duration_h":2.5e-1'), "not-canonical"),
        (lambda d: d.replace(b'{"currency"', b'{ "currency"'), "not-canonical"),
        (lambda d: d.replace(b'"kind":"meter_reading"', b'"kind":"award"'), "columns"),
    ],
)
def test_a_reencoded_edit_with_a_recomputed_leaf_is_still_caught(
    tmp_path: Path, edit: Callable[[bytes], bytes], kind: str
) -> None:
    """An attacker who also rewrites the stored leaf hash: the canonical form or the
    columns still name the record (and the signed head's root differs)."""
    records = [make_record(i) for i in range(8)]
    path = tmp_path / "j.sqlite"
    build(path, records, [8]).close()
    new = edit(rfc8785.dumps(records[5]))
    block = bytearray(stored_block(path, 0))
    block[5 * 32 : 6 * 32] = ref_leaf(new)
    sql(
        path,
        ("UPDATE journal_records SET data = ? WHERE seq = 5", (new,)),
        ("UPDATE journal_leaves SET hashes = ? WHERE block = 0", (bytes(block),)),
    )
    report = verify(path)
    assert first_bad(report) == (5, "rec-00005")
    assert report.first.kind == kind  # type: ignore[union-attr]
    assert "head-root" in {p.kind for p in report.problems}


def test_recheck_signed_re_encodes_records_under_valid_heads(tmp_path: Path) -> None:
    """Bytes under a valid head are trusted as append wrote them; an operator whose own
    writer bypassed append (non-canonical bytes, then signed) is caught by a full re-check."""
    path = tmp_path / "j.sqlite"
    build(path, [make_record(i) for i in range(4)], []).close()
    loose = b'{"id": "rec-00004", "kind": "meter_reading", "participant_id": "home-1"}'
    sql(
        path,
        (
            "INSERT INTO journal_records VALUES (4, 'rec-00004', 'meter_reading', 'home-1', ?)",
            (loose,),
        ),
        ("DELETE FROM journal_leaves", ()),
        ("DELETE FROM journal_nodes", ()),
    )
    with J.open_journal(path) as jr:  # rebuild the stored hashes over the loose bytes
        datas = [jr.entry(f"rec-{i:05d}")[1] for i in range(5)]
    leaf_rows, node_rows = J.stored_rows(merkle.leaf_hashes(datas))
    conn = sqlite3.connect(path)
    with conn:
        conn.executemany("INSERT INTO journal_leaves VALUES (?, ?)", leaf_rows)
        conn.executemany("INSERT INTO journal_nodes VALUES (?, ?)", node_rows)
    conn.close()
    with J.open_journal(path) as jr:
        jr.sign_head(OPERATOR, T0)
        assert jr.verify().ok
        report = jr.verify(recheck_signed=True)
    assert first_bad(report) == (4, "rec-00004")
    assert report.first.kind == "not-canonical"  # type: ignore[union-attr]


def test_stored_values_of_another_type_are_read_not_crashed_on(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    build(path, [make_record(i) for i in range(6)], [6]).close()
    same_text = rfc8785.dumps(make_record(1)).decode()
    sql(path, ("UPDATE journal_records SET data = ? WHERE seq = 1", (same_text,)))
    assert verify(path).ok  # the same bytes, stored as text
    short = stored_block(path, 0)[: 2 * 32] + b"short"  # record 2's leaf hash cut short
    sql(path, ("UPDATE journal_leaves SET hashes = ? WHERE block = 0", (short,)))
    assert first_bad(verify(path)) == (2, "rec-00002")
    sql(path, ("UPDATE journal_leaves SET hashes = 'text' WHERE block = 0", ()))
    assert first_bad(verify(path)) == (0, "rec-00000")
