"""RFC 9162 Merkle hashing and proofs, checked against an independent reference written here
from the RFC (its own SHA-256 leaf/node hashing, the recursive definitions of MTH, PATH and
PROOF of §2.1.1–§2.1.4.1 and the verification algorithms of §2.1.3.2 and §2.1.4.2; nothing
from transactive.settlement.merkle) and against the Certificate Transparency test vectors."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from transactive.errors import InvalidInputError
from transactive.settlement import merkle

# --- the independent reference (RFC 9162 §2.1) ---------------------------------------------


def ref_leaf(data: bytes) -> bytes:
    """MTH({d}) = SHA-256(0x00 || d)."""
    return hashlib.sha256(bytes([0]) + data).digest()


def ref_node(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""
    return hashlib.sha256(bytes([1]) + left + right).digest()


def ref_split(n: int) -> int:
    """k: the largest power of two smaller than n (n > 1)."""
    k = 1
    while 2 * k < n:
        k *= 2
    return k


def ref_mth(entries: list[bytes]) -> bytes:
    """MTH(D[n]) by the recursive definition of §2.1.1."""
    if not entries:
        return hashlib.sha256(b"").digest()
    if len(entries) == 1:
        return ref_leaf(entries[0])
    k = ref_split(len(entries))
    return ref_node(ref_mth(entries[:k]), ref_mth(entries[k:]))


def ref_path(m: int, entries: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of §2.1.3.1."""
    if len(entries) == 1:
        return []
    k = ref_split(len(entries))
    if m < k:
        return [*ref_path(m, entries[:k]), ref_mth(entries[k:])]
    return [*ref_path(m - k, entries[k:]), ref_mth(entries[:k])]


def ref_subproof(m: int, entries: list[bytes], complete: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b) of §2.1.4.1."""
    n = len(entries)
    if m == n:
        return [] if complete else [ref_mth(entries)]
    k = ref_split(n)
    if m <= k:
        return [*ref_subproof(m, entries[:k], complete), ref_mth(entries[k:])]
    return [*ref_subproof(m - k, entries[k:], False), ref_mth(entries[:k])]


def ref_proof(m: int, entries: list[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) = SUBPROOF(m, D[n], true) for 0 < m < n."""
    return ref_subproof(m, entries, True)


def ref_verify_inclusion(
    leaf_index: int, tree_size: int, leaf: bytes, path: list[bytes], root: bytes
) -> bool:
    """§2.1.3.2, step by step."""
    if leaf_index >= tree_size:  # 1
        return False
    fn, sn = leaf_index, tree_size - 1  # 2
    r = leaf  # 3
    for p in path:  # 4
        if sn == 0:  # 4a
            return False
        if fn % 2 == 1 or fn == sn:  # 4b
            r = ref_node(p, r)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn //= 2
                    sn //= 2
        else:
            r = ref_node(r, p)
        fn //= 2  # 4c
        sn //= 2
    return sn == 0 and r == root  # 5


def ref_verify_consistency(
    first: int, second: int, first_hash: bytes, second_hash: bytes, path: list[bytes]
) -> bool:
    """§2.1.4.2, step by step (for 0 < first < second)."""
    if not path:  # 1
        return False
    if first & (first - 1) == 0:  # 2: first is an exact power of 2
        path = [first_hash, *path]
    fn, sn = first - 1, second - 1  # 3
    if fn % 2 == 1:  # 4
        while fn % 2 == 1:
            fn //= 2
            sn //= 2
    fr = sr = path[0]  # 5
    for c in path[1:]:  # 6
        if sn == 0:  # 6a
            return False
        if fn % 2 == 1 or fn == sn:  # 6b
            fr = ref_node(c, fr)
            sr = ref_node(c, sr)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn //= 2
                    sn //= 2
        else:
            sr = ref_node(sr, c)
        fn //= 2  # 6c
        sn //= 2
    return fr == first_hash and sr == second_hash and sn == 0  # 7


# --- helpers -----------------------------------------------------------------------------


def entries_of(n: int, salt: int = 0) -> list[bytes]:
    return [f"entry {salt}:{i}".encode() * (1 + i % 3) for i in range(n)]


def source_of(entries: list[bytes]) -> merkle.MemoryNodes:
    return merkle.MemoryNodes(merkle.build_levels(merkle.leaf_hashes(entries)))


# --- known answers (Certificate Transparency / RFC 6962 test vectors) ----------------------

CT_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    bytes(range(0x50, 0x58)),
    bytes(range(0x60, 0x70)),
]
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
H_96A2 = "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"
H_5F08 = "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"
H_6B47 = "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"
H_BC1A = "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"
H_CA85 = "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"
H_D37E = CT_ROOTS[4]
H_6E34 = CT_ROOTS[1]
H_FAC5 = CT_ROOTS[2]
INCLUSION_VECTORS = [  # (leaf index, tree size, path)
    (0, 8, [H_96A2, H_5F08, H_6B47]),
    (5, 8, [H_BC1A, H_CA85, H_D37E]),
    (2, 3, [H_FAC5]),
    (1, 5, [H_6E34, H_5F08, H_BC1A]),
]
CONSISTENCY_VECTORS = [  # (old size, new size, proof)
    (1, 8, [H_96A2, H_5F08, H_6B47]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a", H_CA85, H_D37E]),
    (2, 5, [H_5F08, H_BC1A]),
    (
        3,
        8,
        [
            "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
            "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
            H_FAC5,
            H_6B47,
        ],
    ),
]


def test_empty_tree_and_empty_leaf_hashes() -> None:
    assert merkle.EMPTY_ROOT.hex() == CT_ROOTS[0]
    assert merkle.leaf_hash(b"").hex() == CT_ROOTS[1]
    assert merkle.tree_root(merkle.MemoryNodes([]), 0).hex() == CT_ROOTS[0]


@pytest.mark.parametrize("n", range(1, 9))
def test_roots_of_the_ct_vectors(n: int) -> None:
    assert merkle.root(merkle.leaf_hashes(CT_LEAVES[:n])).hex() == CT_ROOTS[n]
    assert ref_mth(CT_LEAVES[:n]).hex() == CT_ROOTS[n]  # the reference is right too


@pytest.mark.parametrize(("index", "size", "path"), INCLUSION_VECTORS)
def test_inclusion_proofs_of_the_ct_vectors(index: int, size: int, path: list[str]) -> None:
    src = source_of(CT_LEAVES)
    got = merkle.inclusion_proof(src, index, size)
    assert [p.hex() for p in got] == path
    root = bytes.fromhex(CT_ROOTS[size])
    assert merkle.verify_inclusion(ref_leaf(CT_LEAVES[index]), index, size, got, root)
    assert ref_verify_inclusion(index, size, ref_leaf(CT_LEAVES[index]), got, root)


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY_VECTORS)
def test_consistency_proofs_of_the_ct_vectors(old: int, new: int, proof: list[str]) -> None:
    got = merkle.consistency_proof(source_of(CT_LEAVES), old, new)
    assert [p.hex() for p in got] == proof
    r1, r2 = bytes.fromhex(CT_ROOTS[old]), bytes.fromhex(CT_ROOTS[new])
    assert merkle.verify_consistency(old, new, r1, r2, got)
    assert ref_verify_consistency(old, new, r1, r2, got)


# --- random trees against the reference ------------------------------------------------------


@given(st.integers(1, 200), st.data())
def test_inclusion_proofs_match_the_rfc_and_verify_independently(
    n: int, data: st.DataObject
) -> None:
    entries = entries_of(n)
    index = data.draw(st.integers(0, n - 1))
    size = data.draw(st.integers(index + 1, n))
    src = source_of(entries)
    root = ref_mth(entries[:size])
    assert merkle.tree_root(src, size) == root
    proof = merkle.inclusion_proof(src, index, size)
    assert proof == ref_path(index, entries[:size])
    leaf = ref_leaf(entries[index])
    assert ref_verify_inclusion(index, size, leaf, proof, root)
    assert merkle.verify_inclusion(leaf, index, size, proof, root)
    # a wrong leaf, index, size or sibling fails in both verifiers
    other = ref_leaf(b"not the entry")
    assert not ref_verify_inclusion(index, size, other, proof, root)
    assert not merkle.verify_inclusion(other, index, size, proof, root)
    if size > 1:
        wrong = (index + 1) % size
        assert not merkle.verify_inclusion(leaf, wrong, size, proof, root)
        assert not ref_verify_inclusion(wrong, size, leaf, proof, root)
        j = data.draw(st.integers(0, len(proof) - 1))
        bad = [*proof]
        bad[j] = bytes(32)
        assert not merkle.verify_inclusion(leaf, index, size, bad, root)
        assert not ref_verify_inclusion(index, size, leaf, bad, root)
        assert not merkle.verify_inclusion(leaf, index, size, proof[:-1], root)
        assert not merkle.verify_inclusion(leaf, index, size, [*proof, root], root)
    assert not merkle.verify_inclusion(leaf, index, size * 2 + 1, proof, root)


@given(st.integers(2, 200), st.data())
def test_consistency_proofs_match_the_rfc_and_verify_independently(
    n: int, data: st.DataObject
) -> None:
    entries = entries_of(n, salt=7)
    old = data.draw(st.integers(1, n - 1))
    new = data.draw(st.integers(old + 1, n))
    src = source_of(entries)
    r1, r2 = ref_mth(entries[:old]), ref_mth(entries[:new])
    proof = merkle.consistency_proof(src, old, new)
    assert proof == ref_proof(old, entries[:new])
    assert ref_verify_consistency(old, new, r1, r2, proof)
    assert merkle.verify_consistency(old, new, r1, r2, proof)
    # another history of the same sizes is not consistent
    forged = entries[:old]
    forged[data.draw(st.integers(0, old - 1))] += b"!"
    f1 = ref_mth(forged)
    assert not merkle.verify_consistency(old, new, f1, r2, proof)
    assert not ref_verify_consistency(old, new, f1, r2, proof)
    j = data.draw(st.integers(0, len(proof) - 1))
    bad = [*proof]
    bad[j] = bytes(32)
    assert not merkle.verify_consistency(old, new, r1, r2, bad)
    assert not merkle.verify_consistency(old, new, r1, r2, proof[1:])
    assert not merkle.verify_consistency(old, new, r1, r2, [])
    assert not merkle.verify_consistency(new, old, r2, r1, proof)


def test_trivial_consistency() -> None:
    r = ref_mth(entries_of(5))
    assert merkle.verify_consistency(5, 5, r, r, [])
    assert not merkle.verify_consistency(5, 5, r, bytes(32), [])
    assert not merkle.verify_consistency(5, 5, r, r, [r])
    assert merkle.verify_consistency(0, 5, merkle.EMPTY_ROOT, r, [])
    assert not merkle.verify_consistency(0, 5, r, r, [])
    assert merkle.consistency_proof(source_of(entries_of(5)), 0, 5) == []


def test_bad_arguments_are_named() -> None:
    src = source_of(entries_of(4))
    with pytest.raises(InvalidInputError, match="leaf index 4"):
        merkle.inclusion_proof(src, 4, 4)
    with pytest.raises(InvalidInputError, match="from size 5 to 4"):
        merkle.consistency_proof(src, 5, 4)
    with pytest.raises(InvalidInputError, match="not a subtree"):
        merkle.subtree_keys(1, 3)
    with pytest.raises(InvalidInputError, match="not all in the tree"):
        merkle.tree_root(src, 5)
    with pytest.raises(InvalidInputError, match="hash 1 has 3 bytes"):
        merkle.as_hashes([bytes(32), b"abc"])
    assert not merkle.verify_inclusion(bytes(32), 0, 0, [], merkle.EMPTY_ROOT)
