"""The database journal is the RFC 6962 tree of transactive.settlement.merkle, on both
backends: roots, inclusion and consistency proofs equal the in-memory ones, proofs
verify, signed heads verify with the journal's public key."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from transactive.errors import InvalidInputError
from transactive.service import journal
from transactive.service.db import Database, open_database
from transactive.service.models import JournalLeaf, JournalNode
from transactive.settlement import merkle
from transactive.settlement.journal import SignedTreeHead, load_public_key

NOW = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = open_database(db_url)
    try:
        yield database
    finally:
        database.dispose()


def _reset(s: Session) -> None:
    s.query(JournalNode).delete()
    s.query(JournalLeaf).delete()
    s.commit()


def _entries(lo: int, hi: int) -> list[tuple[str, str, str | None, bytes]]:
    return [
        (f"bid:s:p:{i}", "bid", "p" if i % 3 else None, journal.canonical({"i": i, "x": i / 7}))
        for i in range(lo, hi)
    ]


def test_canonical_is_sorted_compact_utf8_and_rejects_nan() -> None:
    assert journal.canonical({"b": 1.5, "a": "ü", "c": [1, None]}) == (
        '{"a":"ü","b":1.5,"c":[1,null]}'.encode()
    )
    with pytest.raises(InvalidInputError):
        journal.canonical({"x": float("nan")})
    with pytest.raises(InvalidInputError):
        journal.canonical({"x": object()})


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(batches=st.lists(st.integers(1, 40), min_size=1, max_size=5), data=st.data())
def test_appends_equal_the_in_memory_tree(
    db: Database, batches: list[int], data: st.DataObject
) -> None:
    with db.sessions() as s:
        _reset(s)
        n = 0
        for m in batches:  # several transactions: the frontier is read back from the tables
            assert journal.append(s, _entries(n, n + m)) == list(range(n, n + m))
            s.commit()
            n += m
        bodies = [e[3] for e in _entries(0, n)]
        leaves = merkle.leaf_hashes(bodies)
        mem = merkle.MemoryNodes(merkle.build_levels(leaves))
        assert journal.tree_size(s) == n
        # every stored inner node is the in-memory complete subtree of the same place
        assert s.query(JournalNode).count() == sum(len(lv) for lv in mem.levels[1:])
        size = data.draw(st.integers(1, n), label="size")
        index = data.draw(st.integers(0, size - 1), label="index")
        old = data.draw(st.integers(0, size), label="old")
        root = merkle.tree_root(mem, size)
        assert journal.root_hash(s, size) == root
        assert journal.root_hash(s, size) == merkle.root(leaves[:size])
        proof = journal.inclusion_proof(s, index, size)
        assert proof == merkle.inclusion_proof(mem, index, size)
        assert merkle.verify_inclusion(leaves[index].tobytes(), index, size, proof, root)
        cons = journal.consistency_proof(s, old, size)
        assert cons == merkle.consistency_proof(mem, old, size)
        old_root = merkle.tree_root(mem, old)
        assert merkle.verify_consistency(old, size, old_root, root, cons)


def test_signed_head_verifies_and_sizes_are_checked(db: Database) -> None:
    key = Ed25519PrivateKey.generate()
    with db.sessions() as s:
        assert journal.latest_head(s) is None
        empty = journal.sign_head(s, key, NOW)
        assert empty.tree_size == 0 and empty.root_hash == merkle.EMPTY_ROOT
        journal.append(s, _entries(0, 13))
        head = journal.sign_head(s, key, NOW)
        s.commit()
        assert journal.sign_head(s, key, NOW) is head  # same size: the stored head
        latest = journal.latest_head(s)
        assert latest is not None and latest.tree_size == 13
        doc = journal.head_json(latest, key)
        sth = SignedTreeHead(
            doc["tree_size"],
            bytes.fromhex(doc["root_hash"]),
            doc["timestamp"],
            doc["kid"],
            bytes.fromhex(doc["signature"]),
        )
        assert sth.signature_ok(load_public_key(doc["public_key"]))
        assert not sth.signature_ok(Ed25519PrivateKey.generate().public_key())
        forged = SignedTreeHead(14, sth.root_hash, sth.timestamp, sth.key_id, sth.signature)
        assert not forged.signature_ok(load_public_key(doc["public_key"]))
        assert sth.root_hash == merkle.root(merkle.leaf_hashes(e[3] for e in _entries(0, 13)))
        with pytest.raises(InvalidInputError):
            journal.inclusion_proof(s, 3, 14)
        with pytest.raises(InvalidInputError):
            journal.inclusion_proof(s, 13, 13)
        with pytest.raises(InvalidInputError):
            journal.consistency_proof(s, 5, 4)


def test_duplicate_record_id_is_an_integrity_error(db: Database) -> None:
    with db.sessions() as s:
        journal.append(s, _entries(0, 3))
        s.commit()
        with pytest.raises(IntegrityError):
            journal.append(s, _entries(2, 4))
        s.rollback()
        assert journal.tree_size(s) == 3
        assert journal.append(s, []) == []
