"""Merkle tree hashing of RFC 9162 §2.1 (the RFC 6962 tree of Certificate Transparency).

Leaf hash ``SHA-256(0x00 ‖ data)``, node hash ``SHA-256(0x01 ‖ left ‖ right)``, the hash of
the empty tree ``SHA-256("")``. A tree of ``n`` leaves splits at the largest power of two
below ``n``; its hash is therefore the right fold of the hashes of the *complete* subtrees
that the binary digits of ``n`` name, left to right. Those complete subtrees are what the
journal stores: ``levels[k][i]`` is the hash of leaves ``[i·2^k, (i+1)·2^k)``, an ``(m, 32)``
``uint8`` array per level. Any subtree the RFC's recursion visits starts at a multiple of a
power of two at least its size, so its hash is a fold of O(log n) stored nodes, and a proof
is O(log n) lookups. A :class:`NodeSource` hands those lookups to memory or a database.

SHA-256 has no vector form in numpy; hashing loops over rows with ``hashlib`` (about a
microsecond a hash), everything else (levels, comparisons) is arrays.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Protocol

import numpy as np

from transactive.errors import InvalidInputError

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()

Levels = list[np.ndarray]
"""``levels[k]``: the ``(n >> k, 32)`` uint8 hashes of the complete subtrees of size 2^k."""


def leaf_hash(data: bytes) -> bytes:
    """``SHA-256(0x00 ‖ data)``: the hash of one entry."""
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 ‖ left ‖ right)``: the hash of an inner node."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def leaf_hashes(entries: Iterable[bytes]) -> np.ndarray:
    """The ``(n, 32)`` uint8 leaf hashes of ``entries``."""
    sha = hashlib.sha256
    joined = b"".join(sha(LEAF_PREFIX + e).digest() for e in entries)
    return np.frombuffer(joined, dtype=np.uint8).reshape(-1, HASH_SIZE)


def as_hashes(values: Sequence[bytes]) -> np.ndarray:
    """32-byte strings as an ``(n, 32)`` uint8 array; another length is an error."""
    bad = next((i for i, v in enumerate(values) if len(v) != HASH_SIZE), None)
    if bad is not None:
        raise InvalidInputError(f"hash {bad} has {len(values[bad])} bytes, not {HASH_SIZE}")
    return np.frombuffer(b"".join(values), dtype=np.uint8).reshape(-1, HASH_SIZE)


def parent_level(level: np.ndarray) -> np.ndarray:
    """The complete parents of one level: node hashes of the pairs (2i, 2i+1); an odd last
    node has no complete parent and is left out."""
    pairs = level[: len(level) // 2 * 2].tobytes()
    sha, prefix, width = hashlib.sha256, NODE_PREFIX, 2 * HASH_SIZE
    joined = b"".join(
        sha(prefix + pairs[o : o + width]).digest() for o in range(0, len(pairs), width)
    )
    return np.frombuffer(joined, dtype=np.uint8).reshape(-1, HASH_SIZE)


def build_levels(leaves: np.ndarray) -> Levels:
    """Every complete subtree over ``leaves`` (``(n, 32)`` uint8), level by level."""
    levels = [np.ascontiguousarray(leaves, dtype=np.uint8).reshape(-1, HASH_SIZE)]
    while len(levels[-1]) > 1:
        levels.append(parent_level(levels[-1]))
    return levels


def _largest_power_below(n: int) -> int:
    """The largest power of two strictly less than ``n`` (``n ≥ 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def subtree_keys(start: int, end: int) -> list[tuple[int, int]]:
    """The complete subtrees ``(level, index)`` that partition leaves ``[start, end)``, left
    to right. ``start`` must be a multiple of a power of two ≥ ``end - start`` (every range
    the RFC's recursion visits is)."""
    size = end - start
    if size <= 0:
        raise InvalidInputError(f"empty leaf range [{start}, {end})")
    if start % (1 << (size - 1).bit_length()):
        raise InvalidInputError(f"leaf range [{start}, {end}) is not a subtree of the tree")
    keys: list[tuple[int, int]] = []
    offset = start
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            keys.append((level, offset >> level))
            offset += 1 << level
    return keys


def fold(hashes: Sequence[bytes]) -> bytes:
    """The hash of complete subtrees listed left to right: the right fold of node hashes."""
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = node_hash(h, acc)
    return acc


class NodeSource(Protocol):
    """Where the hashes of complete subtrees come from (memory, a database)."""

    def nodes(self, keys: Sequence[tuple[int, int]]) -> list[bytes]:
        """The hashes of the complete subtrees ``(level, index)``, in order."""
        ...


class MemoryNodes:
    """A :class:`NodeSource` over in-memory :data:`Levels`."""

    def __init__(self, levels: Levels) -> None:
        self.levels = levels

    def nodes(self, keys: Sequence[tuple[int, int]]) -> list[bytes]:
        """The hashes of the complete subtrees ``(level, index)``."""
        try:
            return [self.levels[k][i].tobytes() for k, i in keys]
        except IndexError:
            raise InvalidInputError(f"subtrees {list(keys)} are not all in the tree") from None


def range_root(source: NodeSource, start: int, end: int) -> bytes:
    """MTH of leaves ``[start, end)`` (a subtree of the RFC recursion) from stored nodes."""
    return fold(source.nodes(subtree_keys(start, end)))


def tree_root(source: NodeSource, size: int) -> bytes:
    """MTH of the first ``size`` leaves (``EMPTY_ROOT`` for 0)."""
    return EMPTY_ROOT if size == 0 else range_root(source, 0, size)


def root(leaves: np.ndarray) -> bytes:
    """MTH of ``(n, 32)`` leaf hashes."""
    return tree_root(MemoryNodes(build_levels(leaves)), len(leaves))


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose hashes form PATH(index, D[size]) of RFC 9162 §2.1.3.1, in
    proof order (the leaf's sibling first)."""
    if not 0 <= index < size:
        raise InvalidInputError(f"leaf index {index} is not in a tree of {size} leaves")
    ranges: list[tuple[int, int]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _largest_power_below(hi - lo)
        if index < lo + k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo += k
    return ranges[::-1]


def consistency_ranges(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose hashes form PROOF(old, D[new]) of RFC 9162 §2.1.4.1 (empty when
    ``old_size`` is 0 or equals ``new_size``)."""
    if not 0 <= old_size <= new_size:
        raise InvalidInputError(f"no consistency proof from size {old_size} to {new_size}")
    if old_size in (0, new_size):
        return []
    ranges: list[tuple[int, int]] = []
    lo, hi, m, whole = 0, new_size, old_size, True
    while m != hi - lo:
        k = _largest_power_below(hi - lo)
        if m <= k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo, m, whole = lo + k, m - k, False
    if not whole:
        ranges.append((lo, hi))
    return ranges[::-1]


def inclusion_proof(source: NodeSource, index: int, size: int) -> list[bytes]:
    """The audit path of leaf ``index`` in the tree of the first ``size`` leaves."""
    return [range_root(source, a, b) for a, b in inclusion_ranges(index, size)]


def consistency_proof(source: NodeSource, old_size: int, new_size: int) -> list[bytes]:
    """The proof that the tree of ``old_size`` leaves is a prefix of the one of ``new_size``."""
    return [range_root(source, a, b) for a, b in consistency_ranges(old_size, new_size)]


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root_hash: bytes
) -> bool:
    """RFC 9162 §2.1.3.2: does ``proof`` show leaf hash ``leaf`` at ``index`` under
    ``root_hash`` of a tree of ``size`` leaves?"""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root_hash


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 §2.1.4.2: does ``proof`` show the tree of ``old_size`` leaves (``old_root``)
    to be a prefix of the one of ``new_size`` (``new_root``)? Size 0 is a prefix of
    everything (empty proof); equal sizes need equal roots and an empty proof."""
    if not 0 <= old_size <= new_size:
        return False
    if old_size == 0:
        return not proof and old_root == EMPTY_ROOT
    if old_size == new_size:
        return not proof and old_root == new_root
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return fr == old_root and sr == new_root and sn == 0
