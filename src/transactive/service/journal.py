"""The service's append-only journal on the database: an RFC 6962 / RFC 9162 Merkle tree.

Every accepted record (bid, clearing result, award, meter reading, settlement, invoice) is
one leaf of ``journal_leaves``: its canonical JSON body and ``SHA-256(0x00 ‖ body)``. The
hashes of the *complete* subtrees above the leaves (2, 4, 8, … leaves, aligned) are stored
in ``journal_nodes`` keyed by their in-order position, so

- :func:`append` of ``m`` leaves to a tree of ``n`` reads the O(log n) frontier nodes and
  writes about ``m`` new nodes (amortised O(1) hashes per leaf, worst case O(log n));
- a root, an inclusion or a consistency proof is a fold of O(log n) stored nodes per proof
  element, fetched in one query (:mod:`transactive.settlement.merkle` computes the ranges).

Appends serialise on a lock (SQLite: the ``BEGIN IMMEDIATE`` write lock every service
transaction takes; PostgreSQL: a transaction-scoped advisory lock), so leaf indices are
dense and the tree is the same as the in-memory :func:`transactive.settlement.merkle.root`
of the bodies in index order. The operator signs tree heads with the service's ``journal``
Ed25519 key (message of :func:`transactive.settlement.journal.head_message`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from transactive.errors import InvalidInputError
from transactive.service.db import bulk_insert
from transactive.service.models import JournalLeaf, JournalNode, TreeHead
from transactive.settlement import merkle
from transactive.settlement.journal import node_keys, public_bytes, sign_tree_head

#: The advisory-lock key that serialises PostgreSQL appends ("TRJRNL" in ASCII).
PG_LOCK = 0x54524A524E4C
_CHUNK = 500  # bound parameters per IN (...) list


def canonical(obj: Any) -> bytes:
    """Canonical JSON bytes: sorted keys, ``(",", ":")`` separators, UTF-8, floats as
    Python ``repr``; NaN and infinities are rejected (InvalidInputError)."""
    try:
        return json.dumps(
            obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"not representable as canonical JSON: {exc}") from None


def lock(s: Session) -> None:
    """Take the journal's append lock for the rest of the caller's transaction."""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_LOCK})


def tree_size(s: Session) -> int:
    """Number of leaves in the journal."""
    last = s.scalar(select(func.max(JournalLeaf.idx)))
    return 0 if last is None else int(last) + 1


class DbNodes:
    """A :class:`transactive.settlement.merkle.NodeSource` over the journal tables."""

    def __init__(self, s: Session) -> None:
        self.s = s

    def nodes(self, keys: Sequence[tuple[int, int]]) -> list[bytes]:
        """Hashes of the complete subtrees ``(level, index)``, in order (one query per
        500 keys and table)."""
        found: dict[tuple[int, int], bytes] = {}
        leaves = sorted({i for k, i in keys if k == 0})
        for lo in range(0, len(leaves), _CHUNK):
            part = leaves[lo : lo + _CHUNK]
            rows = self.s.execute(
                select(JournalLeaf.idx, JournalLeaf.leaf_hash).where(JournalLeaf.idx.in_(part))
            )
            found.update(((0, int(i)), bytes(h)) for i, h in rows)
        wanted = {int(node_keys(k, i)): (k, i) for k, i in keys if k > 0}
        inner = sorted(wanted)
        for lo in range(0, len(inner), _CHUNK):
            part = inner[lo : lo + _CHUNK]
            rows = self.s.execute(
                select(JournalNode.node, JournalNode.hash).where(JournalNode.node.in_(part))
            )
            found.update((wanted[int(n)], bytes(h)) for n, h in rows)
        missing = [kv for kv in keys if kv not in found]
        if missing:
            raise InvalidInputError(f"journal subtrees {missing[:3]} are not in the tree")
        return [found[kv] for kv in keys]


def _frontier(n: int) -> list[tuple[int, int]]:
    """The complete subtrees ``(level, index)`` that partition the first ``n`` leaves."""
    return merkle.subtree_keys(0, n) if n else []


def append(s: Session, entries: Sequence[tuple[str, str, str | None, bytes]]) -> list[int]:
    """Append ``(record_id, kind, party_id, body)`` leaves inside the caller's transaction;
    returns their leaf indices. Leaves and the new complete subtrees are bulk-inserted;
    a duplicate ``record_id`` raises the database's IntegrityError."""
    if not entries:
        return []
    lock(s)
    n, m = tree_size(s), len(entries)
    bodies = [e[3] for e in entries]
    leaves = merkle.leaf_hashes(bodies)  # (m, 32) uint8
    bulk_insert(
        s,
        "journal_leaves",
        ("idx", "record_id", "kind", "party_id", "leaf_hash", "body"),
        [
            (n + j, rid, kind, party, leaves[j].tobytes(), body)
            for j, (rid, kind, party, body) in enumerate(entries)
        ],
        pg_types=("int8", "text", "text", "text", "bytea", "bytea"),
    )
    old = dict(zip(_frontier(n), DbNodes(s).nodes(_frontier(n)), strict=True))
    new_nodes: list[tuple[int, bytes]] = []
    level, row = 0, leaves
    while True:
        # ``row`` holds the level's nodes from the even index at or below n >> level, so
        # pairing it gives exactly the new complete parents (from index n >> (level + 1)).
        first = n >> level
        if first & 1:
            left = np.frombuffer(old[(level, first - 1)], dtype=np.uint8).reshape(1, -1)
            row = np.concatenate([left, row])
        parents = merkle.parent_level(row)
        if len(parents) == 0:
            break
        level += 1
        start = n >> level
        keys = node_keys(level, np.arange(start, start + len(parents), dtype=np.int64))
        new_nodes.extend((int(k), parents[j].tobytes()) for j, k in enumerate(keys.tolist()))
        row = parents
    if new_nodes:
        bulk_insert(s, "journal_nodes", ("node", "hash"), new_nodes, ("int8", "bytea"))
    return list(range(n, n + m))


def root_hash(s: Session, size: int) -> bytes:
    """MTH of the first ``size`` leaves (``size`` ≤ the tree size)."""
    _check_size(s, size)
    return merkle.tree_root(DbNodes(s), size)


def _check_size(s: Session, size: int) -> None:
    n = tree_size(s)
    if not 0 <= size <= n:
        raise InvalidInputError(f"tree size {size} is not in 0..{n} (the journal's size)")


def _range_roots(s: Session, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
    """The MTH of each leaf range, from one fetch of all the stored nodes they need."""
    parts = [merkle.subtree_keys(a, b) for a, b in ranges]
    flat = [k for p in parts for k in p]
    hashes = dict(zip(flat, DbNodes(s).nodes(flat), strict=True))
    return [merkle.fold([hashes[k] for k in p]) for p in parts]


def inclusion_proof(s: Session, index: int, size: int) -> list[bytes]:
    """The audit path of leaf ``index`` in the tree of the first ``size`` leaves."""
    _check_size(s, size)
    return _range_roots(s, merkle.inclusion_ranges(index, size))


def consistency_proof(s: Session, old: int, new: int) -> list[bytes]:
    """The proof that the tree of ``old`` leaves is a prefix of the tree of ``new``."""
    _check_size(s, new)
    return _range_roots(s, merkle.consistency_ranges(old, new))


def sign_head(s: Session, key: Ed25519PrivateKey, now: datetime) -> TreeHead:
    """Sign and store the head of the current tree (size, root, ``now``); if that size is
    already signed, the stored head is returned (its signature stays valid)."""
    lock(s)
    size = tree_size(s)
    existing = s.get(TreeHead, size)
    if existing is not None:
        return existing
    signed = sign_tree_head(key, size, merkle.tree_root(DbNodes(s), size), now)
    head = TreeHead(
        tree_size=size,
        root_hash=signed.root_hash,
        timestamp=signed.timestamp,
        kid=signed.key_id,
        signature=signed.signature,
    )
    s.add(head)
    s.flush()
    return head


def latest_head(s: Session) -> TreeHead | None:
    """The signed head of the largest tree, or None before the first signature."""
    return s.scalars(select(TreeHead).order_by(TreeHead.tree_size.desc()).limit(1)).first()


def head_json(head: TreeHead, key: Ed25519PrivateKey) -> dict[str, Any]:
    """A head as the API returns it (hex hashes, the signer's raw public key in hex)."""
    return {
        "tree_size": head.tree_size,
        "root_hash": head.root_hash.hex(),
        "timestamp": head.timestamp,
        "kid": head.kid,
        "signature": head.signature.hex(),
        "public_key": public_bytes(key).hex(),
    }
