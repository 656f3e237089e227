"""The journal: an append-only Merkle log of canonical JSON records (DESIGN.md §5).

Every market result, meter reading and settlement line is one *entry*: the record's RFC 8785
canonical JSON bytes. Entries are the leaves of an RFC 9162 Merkle tree
(:mod:`transactive.settlement.merkle`); the operator signs a tree head (size, root,
timestamp) with its Ed25519 key at every market close. Inclusion proofs show one record
under a head, consistency proofs that an older head is a prefix of a newer one, so a
participant holding its records, their proofs and a signed head can check them offline,
seeing only hashes of everybody else's data.

Storage is one SQLite file (the service runs the same SQL on PostgreSQL): plain tables,
integer keys, no SQLite-only clauses; the only dialect difference is the byte type (``BLOB``
here, ``BYTEA`` on PostgreSQL).

- ``journal_meta(name, value)``: format version, the operator's public key (hex) and key id.
- ``journal_records(seq, record_id, kind, participant_id, data)``: ``seq`` is the leaf index.
- ``journal_leaves(block, hashes)``: the leaf hashes, 64 to a row: block ``b`` holds the
  32-byte leaf hashes of records ``64·b …`` concatenated (the last block may be partial and
  is rewritten as it fills). Positional, apart from the records: moving, removing or
  inserting a record row leaves them where they were, so verification names the record.
- ``journal_nodes(node, hash)``: the complete subtrees of 64 leaves and more (level ≥ 6),
  keyed by in-order index ``node = i·2^(k+1) + 2^k − 1`` for subtree ``i`` of level ``k``.
  The keys stay below 2n, so 32-bit integers hold 2^31 records. The few lower subtrees a
  proof needs are hashed from at most two leaf blocks (64 leaves, 63 node hashes each).
- ``journal_heads(head_no, tree_size, root_hash, timestamp, key_id, signature)``.

Verification trusts nothing stored: it recomputes every leaf from the stored bytes and the
tree from the leaves, and compares the stored subtree hashes and signed heads with them;
the first disagreement names the record.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import chain
from json.encoder import c_encode_basestring, c_make_encoder  # type: ignore[attr-defined]
from pathlib import Path
from typing import Any

import numpy as np
import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from transactive.errors import InvalidInputError, TransactiveError
from transactive.settlement import merkle

FORMAT = "transactive-journal/2"
HEAD_FORMAT = "transactive-sth/1"
BUNDLE_FORMAT = "transactive-journal-bundle/1"
SQLITE_MAGIC = b"SQLite format 3\x00"
_SAFE_INT = 2**53 - 1  # RFC 8785 numbers are IEEE doubles: larger integers are not exact
_CHUNK = 20_000  # records per verification batch
BLOCK_LEVEL = 6  # subtrees below this level are not stored but hashed from a leaf block
BLOCK = 1 << BLOCK_LEVEL  # leaf hashes per journal_leaves row
_BLOCK_BYTES = BLOCK * merkle.HASH_SIZE

_SCHEMA = (
    "CREATE TABLE journal_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE journal_records (seq INTEGER PRIMARY KEY, record_id TEXT NOT NULL UNIQUE,"
    " kind TEXT NOT NULL, participant_id TEXT, data BLOB NOT NULL)",
    "CREATE TABLE journal_leaves (block INTEGER PRIMARY KEY, hashes BLOB NOT NULL)",
    "CREATE TABLE journal_nodes (node INTEGER PRIMARY KEY, hash BLOB NOT NULL)",
    "CREATE TABLE journal_heads (head_no INTEGER PRIMARY KEY, tree_size INTEGER NOT NULL,"
    " root_hash BLOB NOT NULL, timestamp TEXT NOT NULL, key_id TEXT NOT NULL,"
    " signature BLOB NOT NULL)",
)


class JournalError(InvalidInputError):
    """A file that is not a journal, or a request the journal cannot answer."""


# --- canonical JSON ---------------------------------------------------------------------


class _Slow(Exception):
    """A value the fast encoder does not handle byte-identically; use ``rfc8785``."""


def _fast_scalar(v: Any) -> Any:
    """A number as RFC 8785 writes it through json.dumps: integral floats as ints; _Slow
    where json.dumps would differ (exponent notation, integers beyond 2^53, NaN)."""
    if type(v) is float:
        if v.is_integer():
            if -_SAFE_INT <= v <= _SAFE_INT:
                return int(v)
            raise _Slow
        if math.isfinite(v) and abs(v) >= 1e-4:  # repr is plain decimal: ECMAScript's form
            return v  # (a float that is not integral is below 2^52: no exponent either)
        raise _Slow
    if type(v) is int and -_SAFE_INT <= v <= _SAFE_INT:
        return v
    raise _Slow


def _fast_value(v: Any) -> Any:
    """``v`` ready for the C json encoder (see _fast_scalar), or _Slow; dict keys must be
    ASCII (UTF-16 and code-point order then agree). Copies only what it changes."""
    t = type(v)
    if t is str or t is bool or v is None:
        return v
    if t is dict:
        changed: dict[str, Any] | None = None
        for k, x in v.items():
            if type(k) is not str or not k.isascii():
                raise _Slow
            tx = type(x)
            if tx is str or tx is bool or x is None:
                continue
            y = _fast_scalar(x) if tx is float or tx is int else _fast_value(x)
            if y is not x:
                if changed is None:
                    changed = dict(v)
                changed[k] = y
        return v if changed is None else changed
    if t is list or t is tuple:
        return [_fast_value(x) for x in v]
    return _fast_scalar(v)


def _reject(o: Any) -> Any:
    raise TypeError(f"{type(o).__name__} is not JSON")


# The C encoder behind json.dumps, made once (json.dumps builds one per call): sorted keys,
# no whitespace, UTF-8 text, no NaN.
_c_encode = c_make_encoder(None, _reject, c_encode_basestring, None, ":", ",", True, False, False)

# Output json.dumps may write differently from RFC 8785 (checked on the text, so a match
# inside a string only costs the slower path): integral floats ("5.0"), exponents
# ("1e-05"), integer parts of 16+ digits (beyond 2^53 RFC 8785 rounds), nested containers.
# Digits are mapped to \x01, which JSON text never holds raw, to find digit patterns with
# substring tests (a regex over every position costs more than the encoding).
_DIGITS = bytes.maketrans(b"0123456789", b"\x01" * 10)
_SIXTEEN_DIGITS = b"\x01" * 16
_CLOSERS = bytes.maketrans(b"}]", b",,")


def _encode(value: Any) -> bytes:
    return "".join(_c_encode(value, 0)).encode("utf-8")


def _plain_text(text: bytes, objects: int) -> bool:
    """Is ``text`` (json.dumps of ``objects`` flat dicts) certainly RFC 8785 as it is?"""
    if not text.isascii():
        return False
    if objects == 1:  # a flat object: a number can precede "}" only at the very end
        if text.find(b"{", 1) >= 0 or b"[" in text or b".0," in text or text.endswith(b".0}"):
            return False
    elif (
        text.count(b"{") != objects
        or text.count(b"[") != 1
        or b".0," in text.translate(_CLOSERS)  # one scan for ".0," ".0}" ".0]"
    ):
        return False
    digits = text.translate(_DIGITS)  # a digit before "e" (exponent) or 16 digits in a row
    return not (b"\x01e" in digits or _SIXTEEN_DIGITS in digits)


def canonical_json(value: Any) -> bytes:
    """RFC 8785 canonical JSON bytes of ``value``; byte-identical to ``rfc8785.dumps``.
    Plain flat records take the C json encoder's output as it is; others are walked first
    (integral floats to ints); the rest goes to ``rfc8785``. Values JSON cannot hold
    exactly (NaN, integers beyond 2^53, lone surrogates, non-string keys) are an
    InvalidInputError."""
    if type(value) is dict and all(type(k) is str for k in value):  # json would write 1 as "1"
        with suppress(TypeError, ValueError):  # not plain: the slow path decides
            text = _encode(value)
            if _plain_text(text, 1):
                return text
    return _canonical_slow(value)


def _canonical_slow(value: Any) -> bytes:
    with suppress(_Slow, UnicodeEncodeError, TypeError, ValueError):  # else rfc8785 decides
        return _encode(_fast_value(value))
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError, UnicodeError) as exc:
        raise InvalidInputError(f"not representable as canonical JSON: {exc}") from None


def canonical_batch(records: Sequence[Any]) -> bytes:
    """Canonical JSON of the list ``records`` (the verifier's fast re-encoding check)."""
    with suppress(TypeError, ValueError):  # not plain: record by record below
        text = _encode(records)
        if _plain_text(text, len(records)):
            return text
    return b"[" + b",".join(canonical_json(r) for r in records) + b"]"  # record by record


def canonical_many(records: Sequence[Any]) -> list[bytes]:
    """``[canonical_json(r) for r in records]``, faster: dicts with string keys are encoded
    by the C encoder and their text checked 256 at a time (:func:`_plain_text`); only the
    records of a group that fails, or of a batch that is not such dicts, are encoded one by
    one by :func:`canonical_json`."""
    dicts = all(type(r) is dict for r in records)
    if dicts and set(map(type, chain.from_iterable(records))) <= {str}:  # string keys
        encode, join = _c_encode, "".join
        try:
            texts = [join(encode(r, 0)).encode("utf-8") for r in records]  # _encode, inlined
        except (TypeError, ValueError, UnicodeEncodeError):
            return [canonical_json(r) for r in records]
        for i in _unplain(texts):
            texts[i] = canonical_json(records[i])
        return texts
    return [canonical_json(r) for r in records]


_CHECK = 256  # texts checked together: few calls, and a failing group is cheap to recheck


def _unplain(texts: list[bytes]) -> list[int]:
    """The indices of the texts (of flat dicts) that fail :func:`_plain_text`, checked a
    group at a time, one by one only in a group that fails."""
    bad: list[int] = []
    for lo in range(0, len(texts), _CHECK):
        part = texts[lo : lo + _CHECK]
        if not _plain_text(b"[" + b",".join(part) + b"]", len(part)):
            bad.extend(lo + j for j, t in enumerate(part) if not _plain_text(t, 1))
    return bad


# --- keys ---------------------------------------------------------------------------------


def operator_key(seed_or_path: str | bytes | Path) -> Ed25519PrivateKey:
    """The operator's Ed25519 signing key from a PEM file, a file or string of 64 hex digits
    (the raw 32-byte seed), 32 raw bytes, or any other string (its SHA-256 is the seed: for
    demos and tests only, a guessable string gives a guessable key)."""
    if isinstance(seed_or_path, bytes):
        if len(seed_or_path) != 32:
            raise InvalidInputError(f"an Ed25519 seed has 32 bytes, got {len(seed_or_path)}")
        return Ed25519PrivateKey.from_private_bytes(seed_or_path)
    path = Path(seed_or_path)
    if isinstance(seed_or_path, Path) or path.is_file():
        raw = path.read_bytes()
        if b"PRIVATE KEY" in raw:
            key = serialization.load_pem_private_key(raw, password=None)
            if not isinstance(key, Ed25519PrivateKey):
                raise InvalidInputError(f"{path}: not an Ed25519 private key")
            return key
        text = raw.decode("ascii", "replace").strip()
        if len(text) != 64 or not _is_hex(text):
            raise InvalidInputError(f"{path}: neither a PEM private key nor 64 hex digits")
        return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(text))
    text = str(seed_or_path)
    if len(text) == 64 and _is_hex(text):
        return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(text))
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(text.encode()).digest())


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)


def public_bytes(key: Ed25519PublicKey | Ed25519PrivateKey) -> bytes:
    """The raw 32-byte public key."""
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """A short name of a public key: the first 16 bytes of its SHA-256, hex."""
    return hashlib.sha256(public_bytes(key)).hexdigest()[:32]


def load_public_key(source: str | bytes | Path) -> Ed25519PublicKey:
    """An Ed25519 public key from raw 32 bytes, 64 hex digits, or a file holding either a
    PEM public key or the hex digits; anything else is an InvalidInputError."""
    if isinstance(source, bytes):
        if len(source) != 32:
            raise InvalidInputError(f"an Ed25519 public key has 32 bytes, got {len(source)}")
        return Ed25519PublicKey.from_public_bytes(source)
    text = str(source).strip()
    if not isinstance(source, Path) and len(text) == 64 and _is_hex(text):
        return Ed25519PublicKey.from_public_bytes(bytes.fromhex(text))
    path = Path(source)
    if not path.is_file():
        raise InvalidInputError(f"{path}: no such public key file")
    raw = path.read_bytes()
    if b"PUBLIC KEY" in raw:
        try:
            key = serialization.load_pem_public_key(raw)
        except ValueError as exc:
            raise InvalidInputError(f"{path}: unreadable PEM public key ({exc})") from None
        if not isinstance(key, Ed25519PublicKey):
            raise InvalidInputError(f"{path}: not an Ed25519 public key")
        return key
    hex_text = raw.decode("ascii", "replace").strip()
    if len(hex_text) != 64 or not _is_hex(hex_text):
        raise InvalidInputError(f"{path}: neither a PEM public key nor 64 hex digits")
    return Ed25519PublicKey.from_public_bytes(bytes.fromhex(hex_text))


# --- signed tree heads ----------------------------------------------------------------------


def _timestamp(t: datetime | str) -> str:
    """RFC 3339 UTC text (``…Z``) of an aware datetime or an ISO 8601 string."""
    if isinstance(t, str):
        try:
            t = datetime.fromisoformat(t.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidInputError(f"timestamp {t!r} is not ISO 8601") from None
    if t.tzinfo is None:
        raise InvalidInputError(f"timestamp {t.isoformat()} has no time zone (need UTC)")
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _instant(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


@dataclass(frozen=True, slots=True)
class SignedTreeHead:
    """The operator's signed statement: the tree of ``tree_size`` records has ``root_hash``
    (32 bytes) at ``timestamp`` (RFC 3339, UTC); ``signature`` is Ed25519 over
    :meth:`message`, by the key named ``key_id``."""

    tree_size: int
    root_hash: bytes
    timestamp: str
    key_id: str
    signature: bytes

    def message(self) -> bytes:
        """The signed bytes: canonical JSON of the format, key id, root (hex), time, size."""
        return head_message(self.tree_size, self.root_hash, self.timestamp, self.key_id)

    def signature_ok(self, public_key: Ed25519PublicKey) -> bool:
        """Is the signature valid under ``public_key`` (and the key id that key's)?"""
        if self.key_id != key_id(public_key):
            return False
        try:
            public_key.verify(self.signature, self.message())
        except InvalidSignature:
            return False
        return True

    def to_json(self) -> dict[str, Any]:
        """The head as JSON (hashes and signature in hex)."""
        return {
            "format": HEAD_FORMAT,
            "tree_size": self.tree_size,
            "root_hash": self.root_hash.hex(),
            "timestamp": self.timestamp,
            "key_id": self.key_id,
            "signature": self.signature.hex(),
        }

    @classmethod
    def from_json(cls, doc: Any) -> SignedTreeHead:
        """A head from :meth:`to_json`'s form; a missing or malformed field is an error."""
        if not isinstance(doc, Mapping) or doc.get("format") != HEAD_FORMAT:
            raise InvalidInputError(f"not a signed tree head (need format {HEAD_FORMAT!r})")
        try:
            size, ts, kid = doc["tree_size"], doc["timestamp"], doc["key_id"]
            root_hash, sig = bytes.fromhex(doc["root_hash"]), bytes.fromhex(doc["signature"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(f"signed tree head: bad or missing field {exc}") from None
        if type(size) is not int or size < 0 or len(root_hash) != 32:
            raise InvalidInputError("signed tree head: tree_size or root_hash malformed")
        if not isinstance(ts, str) or not isinstance(kid, str):
            raise InvalidInputError("signed tree head: timestamp and key_id must be strings")
        return cls(size, root_hash, ts, kid, sig)


def head_message(tree_size: int, root_hash: bytes, timestamp: str, kid: str) -> bytes:
    """The canonical bytes a tree head signature covers."""
    doc = {
        "format": HEAD_FORMAT,
        "key_id": kid,
        "root_hash": root_hash.hex(),
        "timestamp": timestamp,
        "tree_size": tree_size,
    }
    return canonical_json(doc)


def sign_tree_head(
    key: Ed25519PrivateKey, tree_size: int, root_hash: bytes, timestamp: datetime | str
) -> SignedTreeHead:
    """Sign ``(tree_size, root_hash, timestamp)`` with the operator ``key``."""
    ts, kid = _timestamp(timestamp), key_id(key)
    sig = key.sign(head_message(tree_size, root_hash, ts, kid))
    return SignedTreeHead(tree_size, root_hash, ts, kid, sig)


# --- verification report ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding of :meth:`Journal.verify`.

    ``kind`` names the check (``sequence``, ``leaf-hash``, ``not-canonical``, ``columns``,
    ``duplicate-id``, ``missing-records``, ``subtree-hash``, ``head-signature``, ``head-root``,
    ``head-order``, ``head-consistency``, ``saved-head-signature``, ``history-rewritten``).
    ``index``/``record_id`` name the first record concerned; ``exact`` is False when the
    evidence (a root) only bounds it: every record from ``index`` on is then unproven.
    """

    kind: str
    message: str
    index: int | None = None
    record_id: str | None = None
    head: int | None = None
    exact: bool = True

    def to_json(self) -> dict[str, Any]:
        """The problem as a JSON object."""
        return {
            "kind": self.kind,
            "message": self.message,
            "index": self.index,
            "record_id": self.record_id,
            "head": self.head,
            "exact": self.exact,
        }


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The outcome of a verification: ``ok`` when nothing is wrong; ``first`` the problem
    that names the first bad record (exactly located ones before bounded ones)."""

    records: int
    heads: int
    root_hash: bytes
    signed_size: int
    problems: tuple[Problem, ...] = field(default=())
    checked: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """No problem found."""
        return not self.problems

    @property
    def first(self) -> Problem | None:
        """The problem naming the first bad record (or the first problem if none names
        a record)."""
        if not self.problems:
            return None

        def rank(p: Problem) -> tuple[int, float]:
            where = math.inf if p.index is None else p.index
            return (0 if p.exact and p.index is not None else 1, where)

        return min(self.problems, key=rank)

    def to_json(self) -> dict[str, Any]:
        """The report as JSON."""
        first = self.first
        return {
            "ok": self.ok,
            "records": self.records,
            "heads": self.heads,
            "root_hash": self.root_hash.hex(),
            "signed_size": self.signed_size,
            "unsigned_records": self.records - self.signed_size,
            "first": None if first is None else first.to_json(),
            "problems": [p.to_json() for p in self.problems],
            **self.checked,
        }


# --- the journal ------------------------------------------------------------------------


def node_keys(level: int, index: np.ndarray | int) -> Any:
    """In-order keys of complete subtrees ``index`` of ``level``: ``i·2^(k+1) + 2^k − 1``."""
    return index * (1 << (level + 1)) + (1 << level) - 1


def _key_level_index(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The (level, index) of in-order node keys."""
    x = keys.astype(np.int64) + 1
    low = x & -x  # 2^level
    level = np.log2(low).astype(np.int64)
    return level, x // (2 * low)


def _check_record(record: Any, position: int) -> tuple[str, str, str | None]:
    """The id, kind and participant of one record to append, or InvalidInputError."""
    if type(record) is not dict and not isinstance(record, Mapping):
        raise InvalidInputError(f"record {position} is a {type(record).__name__}, not a dict")
    rid, kind, part = record.get("id"), record.get("kind"), record.get("participant_id")
    if not isinstance(rid, str) or not rid:
        raise InvalidInputError(f"record {position} has no string 'id' (got {rid!r})")
    if not isinstance(kind, str) or not kind:
        raise InvalidInputError(f"record {rid!r} has no string 'kind' (got {kind!r})")
    if part is not None and not isinstance(part, str):
        raise InvalidInputError(f"record {rid!r}: participant_id must be a string or absent")
    return rid, kind, part


def _columns(records: Sequence[Any]) -> tuple[list[str], list[str], list[str | None]]:
    """The ids, kinds and participants of records to append (see _check_record), a column
    at a time when every record is a plain dict with them, else record by record."""
    if all(type(r) is dict for r in records):
        ids = [r.get("id") for r in records]
        kinds = [r.get("kind") for r in records]
        parts = [r.get("participant_id") for r in records]
        if (
            all(type(x) is str and x for x in ids)
            and all(type(x) is str and x for x in kinds)
            and all(x is None or type(x) is str for x in parts)
        ):
            return ids, kinds, parts
    checked = [_check_record(r, i) for i, r in enumerate(records)]
    return [c[0] for c in checked], [c[1] for c in checked], [c[2] for c in checked]


class Journal:
    """An open journal (see the module docstring). Use :func:`open_journal`."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        self._size = int(conn.execute("SELECT COUNT(*) FROM journal_records").fetchone()[0])
        self._frontier: dict[int, bytes] | None = None  # read at the first append
        self._tail: bytes | None = None  # leaf hashes of the partial last block, likewise

    # -- plumbing

    def close(self) -> None:
        """Close the database connection."""
        self._conn.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def size(self) -> int:
        """Number of records (the tree size)."""
        return self._size

    def meta(self, name: str) -> str | None:
        """A metadata value, or None."""
        row = self._conn.execute("SELECT value FROM journal_meta WHERE name = ?", (name,))
        got = row.fetchone()
        return None if got is None else str(got[0])

    def public_key(self) -> Ed25519PublicKey | None:
        """The operator public key stored at creation (None if never stored)."""
        value = self.meta("operator_public_key")
        return None if value is None else load_public_key(value)

    def set_public_key(self, key: Ed25519PublicKey | Ed25519PrivateKey) -> None:
        """Store the operator public key; a journal keeps the key it was created with."""
        current = self.meta("operator_public_key")
        new = public_bytes(key).hex()
        if current is not None and current != new:
            raise JournalError(
                f"{self.path}: the journal's operator key is {current[:16]}…, not {new[:16]}…"
            )
        if current == new and self.meta("operator_key_id") is not None:
            return
        with self._conn:
            self._conn.executemany(
                "INSERT INTO journal_meta (name, value) SELECT ?, ? WHERE NOT EXISTS"
                " (SELECT 1 FROM journal_meta WHERE name = ?)",
                [
                    ("operator_public_key", new, "operator_public_key"),
                    ("operator_key_id", key_id(key), "operator_key_id"),
                ],
            )

    def nodes(self, keys: Sequence[tuple[int, int]]) -> list[bytes]:
        """Hashes of complete subtrees ``(level, index)`` (a merkle.NodeSource): stored ones
        from level BLOCK_LEVEL up, lower ones hashed from their leaf block."""
        found = self._block_nodes([kv for kv in keys if kv[0] < BLOCK_LEVEL])
        high = [kv for kv in keys if kv[0] >= BLOCK_LEVEL]
        wanted = {int(node_keys(k, i)): (k, i) for k, i in high}
        for part in _parts(list(wanted)):
            sql = f"SELECT node, hash FROM journal_nodes WHERE node IN ({_marks(part)})"
            found.update((wanted[int(k)], _as_bytes(h)) for k, h in self._conn.execute(sql, part))
        missing = [kv for kv in keys if kv not in found]
        if missing:
            raise JournalError(f"{self.path}: stored subtree hashes {missing[:3]} are missing")
        return [found[kv] for kv in keys]

    def _block_nodes(self, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        """Subtrees below BLOCK_LEVEL, hashed from the stored leaf blocks that hold them."""
        if not keys:
            return {}
        blocks = sorted({(i << k) >> BLOCK_LEVEL for k, i in keys})
        levels: dict[int, merkle.Levels] = {}
        for part in _parts(blocks):
            sql = f"SELECT block, hashes FROM journal_leaves WHERE block IN ({_marks(part)})"
            for b, blob in self._conn.execute(sql, part):
                raw = _as_bytes(blob)[:_BLOCK_BYTES]
                raw = raw[: len(raw) // merkle.HASH_SIZE * merkle.HASH_SIZE]
                leaves = np.frombuffer(raw, dtype=np.uint8).reshape(-1, merkle.HASH_SIZE)
                levels[int(b)] = merkle.build_levels(leaves)
        found = {}
        for k, i in keys:
            b = (i << k) >> BLOCK_LEVEL
            lv = levels.get(b, [])
            j = i - (b << (BLOCK_LEVEL - k))
            if k < len(lv) and j < len(lv[k]):
                found[(k, i)] = lv[k][j].tobytes()
        return found

    def _load_tail(self, n: int) -> bytes:
        """The stored leaf hashes of the last block when it is partial (else empty)."""
        if not n % BLOCK:
            return b""
        row = self._conn.execute(
            "SELECT hashes FROM journal_leaves WHERE block = ?", (n >> BLOCK_LEVEL,)
        ).fetchone()
        tail = b"" if row is None else _as_bytes(row[0])
        if len(tail) != n % BLOCK * merkle.HASH_SIZE:
            raise JournalError(
                f"{self.path}: the leaf hashes of records {n - n % BLOCK}… are damaged"
            )
        return tail

    def _load_frontier(self, n: int) -> dict[int, bytes]:
        """The complete subtrees still waiting for a right sibling: level → hash."""
        keys = [(k, (n >> k) - 1) for k in range(n.bit_length()) if n >> k & 1]
        return dict(zip([k for k, _ in keys], self.nodes(keys), strict=True)) if keys else {}

    # -- writing

    def append(self, records: Sequence[Mapping[str, Any]]) -> list[int]:
        """Append ``records`` (dicts with a unique string ``id`` and a ``kind``; optional
        ``participant_id``) as one transaction; returns their leaf indices. A duplicate id
        (in the batch or the journal) or a value canonical JSON cannot hold rejects the whole
        batch with an InvalidInputError naming the record."""
        if isinstance(records, Mapping):
            raise InvalidInputError("append takes a list of records, not one record")
        n = self._size
        if not records:
            return []
        ids, kinds, parts = _columns(records)
        try:
            datas = canonical_many(records)
        except InvalidInputError:
            for r, rid in zip(records, ids, strict=True):
                try:
                    canonical_json(r)
                except InvalidInputError as exc:
                    raise InvalidInputError(f"record {rid!r}: {exc}") from None
            raise
        m = len(ids)
        if len(set(ids)) != len(ids):
            seen: set[str] = set()
            for rid in ids:
                if rid in seen:
                    raise InvalidInputError(f"record id {rid!r} appears twice in the batch")
                seen.add(rid)
        if self._frontier is None or self._tail is None:
            self._tail = self._load_tail(n)  # first: its error is the clearer one
            self._frontier = self._load_frontier(n)
        leaves = merkle.leaf_hashes(datas)
        node_rows, frontier = self._new_nodes(n, leaves, self._frontier)
        leaf_rows = leaf_blocks(n, leaves, self._tail)
        last = leaf_rows[-1][1]
        tail = last if len(last) < _BLOCK_BYTES else b""
        try:
            with self._conn:
                self._conn.executemany(
                    "INSERT INTO journal_records (seq, record_id, kind, participant_id, data)"
                    " VALUES (?, ?, ?, ?, ?)",
                    zip(range(n, n + m), ids, kinds, parts, datas, strict=True),
                )
                if self._tail:  # the partial last block grows: replace its row
                    self._conn.execute(
                        "DELETE FROM journal_leaves WHERE block = ?", (n >> BLOCK_LEVEL,)
                    )
                self._conn.executemany(
                    "INSERT INTO journal_leaves (block, hashes) VALUES (?, ?)", leaf_rows
                )
                self._conn.executemany(
                    "INSERT INTO journal_nodes (node, hash) VALUES (?, ?)", node_rows
                )
        except sqlite3.IntegrityError:
            raise InvalidInputError(
                f"record id {self._first_existing(ids)!r} is already in the journal"
            ) from None
        self._size, self._frontier, self._tail = n + m, frontier, tail
        return list(range(n, n + m))

    def _first_existing(self, ids: list[str]) -> str:
        """The first of ``ids`` already stored."""
        for part in _parts(ids):
            sql = f"SELECT record_id FROM journal_records WHERE record_id IN ({_marks(part)})"
            hit = {r for (r,) in self._conn.execute(sql, part)}
            if hit:
                return next(i for i in part if i in hit)
        return "?"

    @staticmethod
    def _new_nodes(
        n: int, leaves: np.ndarray, old_frontier: dict[int, bytes]
    ) -> tuple[list[tuple[int, bytes]], dict[int, bytes]]:
        """The stored node rows (level ≥ BLOCK_LEVEL) a batch of leaves adds to a tree of
        ``n``, and the new frontier (the complete subtrees of every level still waiting for
        a right sibling)."""
        total = n + len(leaves)
        rows: list[tuple[int, bytes]] = []
        frontier: dict[int, bytes] = {}
        level, new = 0, leaves
        while (total >> level) > 0:
            first = n >> level
            if level >= BLOCK_LEVEL:
                keys = node_keys(level, np.arange(first, first + len(new), dtype=np.int64))
                blob = new.tobytes()
                rows.extend((k, blob[32 * j : 32 * j + 32]) for j, k in enumerate(keys.tolist()))
            pending = old_frontier.get(level) if first & 1 else None
            seq = new if pending is None else np.concatenate([_row(pending), new])
            if (total >> level) & 1:
                frontier[level] = seq[-1].tobytes()
            new = merkle.parent_level(seq)
            level += 1
        return rows, frontier

    def sign_head(self, key: Ed25519PrivateKey, timestamp: datetime | str) -> SignedTreeHead:
        """Sign and store the head of the current tree (at a market close)."""
        self.set_public_key(key)
        head = sign_tree_head(key, self._size, self.root(self._size), timestamp)
        latest = self.latest_head()
        if latest is not None and _instant(head.timestamp) < _instant(latest.timestamp):
            raise InvalidInputError(
                f"head timestamp {head.timestamp} is before the latest head's {latest.timestamp}"
            )
        row = (self._head_count(), head.tree_size, head.root_hash, head.timestamp)
        with self._conn:
            self._conn.execute(
                "INSERT INTO journal_heads (head_no, tree_size, root_hash, timestamp,"
                " key_id, signature) VALUES (?, ?, ?, ?, ?, ?)",
                (*row, head.key_id, head.signature),
            )
        return head

    def _head_count(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM journal_heads").fetchone()[0])

    # -- reading

    def heads(self) -> list[SignedTreeHead]:
        """Every stored signed tree head, oldest first."""
        sql = (
            "SELECT tree_size, root_hash, timestamp, key_id, signature FROM journal_heads"
            " ORDER BY head_no"
        )
        return [
            SignedTreeHead(int(s), bytes(r), str(t), str(k), bytes(g))
            for s, r, t, k, g in self._conn.execute(sql)
        ]

    def latest_head(self) -> SignedTreeHead | None:
        """The newest stored head, or None."""
        sql = (
            "SELECT tree_size, root_hash, timestamp, key_id, signature FROM journal_heads"
            " ORDER BY head_no DESC LIMIT 1"
        )
        got = self._conn.execute(sql).fetchone()
        if got is None:
            return None
        s, r, t, k, g = got
        return SignedTreeHead(int(s), bytes(r), str(t), str(k), bytes(g))

    def head(self, size: int | None = None) -> SignedTreeHead:
        """The newest head of ``size`` records (the newest head of all when None)."""
        heads = [h for h in self.heads() if size is None or h.tree_size == size]
        if not heads:
            what = "no signed head" if size is None else f"no signed head of size {size}"
            raise JournalError(f"{self.path}: {what}")
        return heads[-1]

    def root(self, size: int | None = None) -> bytes:
        """The root hash of the first ``size`` records (all when None), from stored nodes."""
        size = self._size if size is None else size
        if not 0 <= size <= self._size:
            raise InvalidInputError(f"tree size {size} is not in 0…{self._size}")
        return merkle.tree_root(self, size)

    def index(self, record_id: str) -> int:
        """The leaf index of record ``record_id`` (InvalidInputError if unknown)."""
        row = self._conn.execute(
            "SELECT seq FROM journal_records WHERE record_id = ?", (record_id,)
        ).fetchone()
        if row is None:
            raise JournalError(f"{self.path}: no record with id {record_id!r}")
        return int(row[0])

    def entry(self, record_id: str) -> tuple[int, bytes]:
        """The leaf index and stored canonical bytes of ``record_id``."""
        row = self._conn.execute(
            "SELECT seq, data FROM journal_records WHERE record_id = ?", (record_id,)
        ).fetchone()
        if row is None:
            raise JournalError(f"{self.path}: no record with id {record_id!r}")
        return int(row[0]), bytes(row[1])

    def record(self, record_id: str) -> dict[str, Any]:
        """The stored record ``record_id`` as a dict."""
        return dict(json.loads(self.entry(record_id)[1]))

    def records(
        self,
        kind: str | None = None,
        participant_id: str | None = None,
        limit: int | None = None,
    ) -> Iterator[tuple[int, dict[str, Any]]]:
        """``(index, record)`` in journal order, optionally of one kind / participant."""
        where, args = [], []
        if kind is not None:
            where.append("kind = ?")
            args.append(kind)
        if participant_id is not None:
            where.append("participant_id = ?")
            args.append(participant_id)
        sql = "SELECT seq, data FROM journal_records"
        sql += (" WHERE " + " AND ".join(where)) if where else ""
        sql += " ORDER BY seq"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        for seq, data in self._conn.execute(sql, args):
            yield int(seq), json.loads(data)

    def inclusion_proof(self, record_id: str, head: SignedTreeHead | None = None) -> list[bytes]:
        """The audit path of ``record_id`` in the tree of ``head`` (the newest head when
        None): O(log n) stored nodes, read in one query."""
        head = self.head() if head is None else head
        idx = self.index(record_id)
        if idx >= head.tree_size:
            raise JournalError(
                f"record {record_id!r} (index {idx}) is newer than the head of size"
                f" {head.tree_size}"
            )
        return self._proof(merkle.inclusion_ranges(idx, head.tree_size))

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """The proof that the tree of ``old_size`` records is a prefix of ``new_size``'s."""
        if new_size > self._size:
            raise InvalidInputError(f"tree size {new_size} exceeds the journal's {self._size}")
        return self._proof(merkle.consistency_ranges(old_size, new_size))

    def _proof(self, ranges: list[tuple[int, int]]) -> list[bytes]:
        parts = [merkle.subtree_keys(a, b) for a, b in ranges]
        flat = [k for p in parts for k in p]
        hashes = dict(zip(flat, self.nodes(flat), strict=True))
        return [merkle.fold([hashes[k] for k in p]) for p in parts]

    # -- verification

    def verify(
        self,
        public_key: Ed25519PublicKey | None = None,
        head: SignedTreeHead | None = None,
        recheck_signed: bool = False,
    ) -> VerifyReport:
        """Check everything from the stored bytes (see :func:`verify_journal`)."""
        return verify_journal(self, public_key, head, recheck_signed)


def _row(h: bytes) -> np.ndarray:
    return np.frombuffer(h, dtype=np.uint8).reshape(1, 32)


def _parts(values: list[Any], size: int = 500) -> Iterator[list[Any]]:
    """``values`` in slices of ``size`` (SQL parameter lists stay short)."""
    for lo in range(0, len(values), size):
        yield values[lo : lo + size]


def _marks(part: list[Any]) -> str:
    return ",".join("?" * len(part))


def leaf_blocks(n: int, leaves: np.ndarray, tail: bytes = b"") -> list[tuple[int, bytes]]:
    """The ``journal_leaves`` rows ``(block, hashes)`` of ``leaves`` (``(m, 32)`` uint8)
    appended to a journal of ``n`` records whose partial last block holds ``tail``."""
    blob = tail + np.ascontiguousarray(leaves, dtype=np.uint8).tobytes()
    first = n >> BLOCK_LEVEL
    return [
        (first + j, blob[o : o + _BLOCK_BYTES])
        for j, o in enumerate(range(0, len(blob), _BLOCK_BYTES))
    ]


def stored_rows(leaves: np.ndarray) -> tuple[list[tuple[int, bytes]], list[tuple[int, bytes]]]:
    """The ``journal_leaves`` and ``journal_nodes`` rows of a journal whose records have
    leaf hashes ``leaves`` (a repair or an audit rebuilds them with this)."""
    levels = merkle.build_levels(leaves) if len(leaves) else []
    nodes = [
        (int(node_keys(k, i)), levels[k][i].tobytes())
        for k in range(BLOCK_LEVEL, len(levels))
        for i in range(len(levels[k]))
    ]
    return leaf_blocks(0, leaves), nodes


def open_journal(
    path: str | Path,
    create: bool = False,
    operator_public_key: Ed25519PublicKey | Ed25519PrivateKey | None = None,
) -> Journal:
    """Open the journal in SQLite file ``path``; with ``create`` make a new one (the file
    must not exist) storing ``operator_public_key`` in its metadata.

    Durability is SQLite's default and is kept on purpose: a rollback journal and
    ``synchronous = FULL``, so every ``append`` and ``sign_head`` is on disk when it
    returns. (A write-ahead log with ``synchronous = NORMAL`` was measured: it writes every
    page twice, log then checkpoint, and cost more CPU per appended record, not less.)"""
    path = Path(path)
    if create:
        if path.exists():
            raise JournalError(f"{path}: already exists (will not overwrite a file)")
        conn = sqlite3.connect(path)
        with conn:
            for sql in _SCHEMA:
                conn.execute(sql)
            conn.execute("INSERT INTO journal_meta (name, value) VALUES ('format', ?)", (FORMAT,))
        journal = Journal(conn, path)
        if operator_public_key is not None:
            journal.set_public_key(operator_public_key)
        return journal
    if not path.is_file():
        raise JournalError(f"{path}: no such journal")
    with path.open("rb") as fh:
        if fh.read(16) != SQLITE_MAGIC:
            raise JournalError(f"{path}: not a journal (not an SQLite file)")
    conn = sqlite3.connect(path)
    try:
        fmt = conn.execute("SELECT value FROM journal_meta WHERE name = 'format'").fetchone()
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise JournalError(f"{path}: not a journal ({exc})") from None
    if fmt is not None and fmt[0] != FORMAT and str(fmt[0]).startswith("transactive-journal/"):
        conn.close()
        raise JournalError(f"{path}: a journal of format {fmt[0]}; this version reads {FORMAT}")
    if fmt is None or fmt[0] != FORMAT:
        conn.close()
        raise JournalError(f"{path}: not a journal (format {fmt and fmt[0]!r}, need {FORMAT})")
    try:
        return Journal(conn, path)
    except (TransactiveError, sqlite3.DatabaseError):
        conn.close()
        raise


# --- verification of a whole journal ----------------------------------------------------


def _record_name(ids: Sequence[str], i: int) -> str | None:
    return ids[i] if 0 <= i < len(ids) else None


def _canonical_problems(
    datas: list[bytes],
    ids: list[str],
    kinds: list[str],
    parts: list[str | None],
    base: int,
    reencode: bool,
) -> Problem | None:
    """The first record of a batch (indices from ``base``) whose bytes are not JSON, not
    canonical (checked when ``reencode``) or disagree with its id / kind / participant
    columns (which no hash covers, so they are checked everywhere)."""
    joined = b"[" + b",".join(datas) + b"]"
    fast = False
    if joined.isascii():
        try:
            objs = json.loads(joined)
            fast = (
                type(objs) is list
                and len(objs) == len(datas)
                and (not reencode or canonical_batch(objs) == joined)
                and all(
                    type(o) is dict
                    and o.get("id") == i
                    and o.get("kind") == k
                    and o.get("participant_id") == p
                    for o, i, k, p in zip(objs, ids, kinds, parts, strict=True)
                )
            )
        except (ValueError, InvalidInputError):
            fast = False
    if fast:
        return None
    for j, data in enumerate(datas):
        problem = _one_canonical_problem(data, ids[j], kinds[j], parts[j], base + j)
        if problem is not None:
            return problem
    return None


def _one_canonical_problem(
    data: bytes, rid: str, kind: str, part: str | None, index: int
) -> Problem | None:
    try:
        obj = json.loads(data)
        again = canonical_json(obj)
    except (ValueError, InvalidInputError) as exc:
        return Problem("not-canonical", f"record {index} ({rid}) is not JSON: {exc}", index, rid)
    if again != data:
        at = next(
            (i for i, (a, b) in enumerate(zip(again, data, strict=False)) if a != b), len(again)
        )
        return Problem(
            "not-canonical",
            f"record {index} ({rid}) is not in canonical form (from byte {at})",
            index,
            rid,
        )
    if not isinstance(obj, dict):
        return Problem("columns", f"record {index} ({rid}) is not a JSON object", index, rid)
    got = (obj.get("id"), obj.get("kind"), obj.get("participant_id"))
    if got != (rid, kind, part):
        return Problem(
            "columns",
            f"record {index} ({rid}): id/kind/participant in the data {got} differ from the"
            f" stored columns {(rid, kind, part)}",
            index,
            rid,
        )
    return None


def _leaf_problems(journal: Journal, leaves: np.ndarray, ids: list[str], n: int) -> list[Problem]:
    """The recomputed leaf hashes compared, position by position, with the stored ones:
    the first record whose bytes do not hash to its stored leaf, or that has none, or a
    stored leaf beyond the records."""
    stored = np.zeros((n, merkle.HASH_SIZE), dtype=np.uint8)
    present = np.zeros(n, dtype=bool)
    end = 0  # one past the last stored leaf hash
    for b, blob in journal._conn.execute("SELECT block, hashes FROM journal_leaves"):
        raw = _as_bytes(blob)[:_BLOCK_BYTES]
        start, count = int(b) * BLOCK, -(-len(raw) // merkle.HASH_SIZE)
        if start < 0 or not count:
            continue
        end = max(end, start + count)
        if start < n:  # a short last hash is zero-padded: it then differs, at its place
            count = min(count, n - start)
            raw = raw[: count * merkle.HASH_SIZE].ljust(count * merkle.HASH_SIZE, b"\0")
            stored[start : start + count] = np.frombuffer(raw, np.uint8).reshape(count, -1)
            present[start : start + count] = True
    bad = np.flatnonzero(~present | np.any(stored != leaves, axis=1))
    if bad.size:
        first = int(bad[0])
        what = (
            "its bytes do not hash to the leaf hash stored when it was appended (edited,"
            " moved or inserted)"
            if present[first]
            else "was not appended by the journal (no leaf hash was stored for it)"
        )
        return [Problem("leaf-hash", f"record {first} ({ids[first]}): {what}", first, ids[first])]
    if end > n:
        return [
            Problem(
                "missing-records",
                f"record {n} was appended (its leaf hash is stored) but is missing:"
                f" the journal holds {n} records",
                n,
                None,
            )
        ]
    return []


def _expected_nodes(levels: merkle.Levels) -> tuple[np.ndarray, np.ndarray]:
    """In-order keys and hashes of the stored complete subtrees (level ≥ BLOCK_LEVEL),
    sorted by key."""
    if len(levels) <= BLOCK_LEVEL:
        return np.empty(0, np.int64), np.empty((0, merkle.HASH_SIZE), np.uint8)
    keys = np.concatenate(
        [
            node_keys(k, np.arange(len(levels[k]), dtype=np.int64))
            for k in range(BLOCK_LEVEL, len(levels))
        ]
    )
    hashes = np.concatenate(levels[BLOCK_LEVEL:])
    order = np.argsort(keys, kind="stable")
    return keys[order], hashes[order]


def _node_problems(
    journal: Journal, levels: merkle.Levels, ids: list[str], n: int
) -> list[Problem]:
    """Stored subtree hashes (level ≥ BLOCK_LEVEL) compared with the recomputed tree."""
    cursor = journal._conn.execute("SELECT node, hash FROM journal_nodes ORDER BY node")
    key_parts, hash_parts = [np.empty(0, np.int64)], [b""]
    while rows := cursor.fetchmany(4 * _CHUNK):  # streamed: no Python row per node kept
        key_parts.append(np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)))
        try:
            blob = b"".join([r[1] for r in rows])
        except TypeError:  # an edited file may hold other types
            blob = b""
        if len(blob) != 32 * len(rows):  # fix widths so one bad hash stays one row
            blob = b"".join(_as_bytes(r[1]).ljust(32, b"\0")[:32] for r in rows)
        hash_parts.append(blob)
    stored_keys = np.concatenate(key_parts)
    stored = np.frombuffer(b"".join(hash_parts), dtype=np.uint8).reshape(-1, 32)
    keys, hashes = _expected_nodes(levels)
    problems: list[Problem] = []
    if np.array_equal(stored_keys, keys):  # the common case: compare the hashes only
        differ = np.flatnonzero(np.any(stored != hashes, axis=1))
        return _differing_nodes(keys[differ], ids) if differ.size else []
    extra = np.setdiff1d(stored_keys, keys)
    if extra.size:  # subtrees over records that are not stored (the leaves say which)
        lvl, idx = _key_level_index(extra)
        first = int(np.min(idx << lvl))
        problems.append(
            Problem(
                "missing-records",
                f"a stored subtree hash covers records from {first} to"
                f" {int(np.max((idx + 1) << lvl)) - 1}, but the journal holds {n} records",
                first,
                _record_name(ids, first),
                exact=False,
            )
        )
    missing = np.setdiff1d(keys, stored_keys)
    if missing.size:
        lvl, idx = _key_level_index(missing)
        first = int(np.min(idx << lvl))
        problems.append(
            Problem(
                "subtree-hash",
                f"record {first} ({_record_name(ids, first)}) is covered by a stored subtree"
                " hash that is missing",
                first,
                _record_name(ids, first),
                exact=False,
            )
        )
    common, si, ei = np.intersect1d(stored_keys, keys, assume_unique=True, return_indices=True)
    differ = np.flatnonzero(np.any(stored[si] != hashes[ei], axis=1))
    return problems + (_differing_nodes(common[differ], ids) if differ.size else [])


def _differing_nodes(keys: np.ndarray, ids: list[str]) -> list[Problem]:
    """The problem of stored subtree hashes (in-order ``keys``) that differ from the
    recomputed ones (the leaves, checked apart, name a record exactly)."""
    lvl, idx = _key_level_index(keys)
    first = int(np.min(idx << lvl))
    return [
        Problem(
            "subtree-hash",
            f"a stored subtree hash over records from {first} differs from the records' hashes",
            first,
            _record_name(ids, first),
            exact=False,
        )
    ]


def _head_problems(
    heads: list[SignedTreeHead],
    source: merkle.MemoryNodes,
    n: int,
    ids: list[str],
    public_key: Ed25519PublicKey,
) -> tuple[list[Problem], int]:
    """Every stored head: signature, root at its size, order, consistency with the newest
    valid one. Returns the problems and the largest size a valid head vouches for."""
    problems: list[Problem] = []
    vouched, previous, valid = 0, 0, []
    for no, head in enumerate(heads):
        if head.tree_size < previous:
            problems.append(
                Problem(
                    "head-order",
                    f"head {no} has size {head.tree_size} after a head of size {previous}",
                    head.tree_size,
                    _record_name(ids, head.tree_size),
                    head=no,
                    exact=False,
                )
            )
        previous = max(previous, head.tree_size)
        if head.tree_size > n:
            problems.append(
                Problem(
                    "missing-records",
                    f"head {no} signs {head.tree_size} records but the journal holds {n}:"
                    f" record {n} and later are missing",
                    n,
                    None,
                    head=no,
                )
            )
            continue
        if not head.signature_ok(public_key):
            problems.append(
                Problem(
                    "head-signature",
                    f"head {no} (size {head.tree_size}) is not signed by the operator key"
                    f" {key_id(public_key)}: records from {vouched} on are unproven",
                    vouched,
                    _record_name(ids, vouched),
                    head=no,
                    exact=False,
                )
            )
            continue
        if merkle.tree_root(source, head.tree_size) != head.root_hash:
            problems.append(
                Problem(
                    "head-root",
                    f"head {no} (size {head.tree_size}) signs a root the records do not"
                    f" hash to: a record from {vouched} to {head.tree_size - 1} was changed",
                    vouched,
                    _record_name(ids, vouched),
                    head=no,
                    exact=False,
                )
            )
            continue
        valid.append((no, head))
        vouched = max(vouched, head.tree_size)
    if valid:
        newest = max(valid, key=lambda nh: nh[1].tree_size)[1]
        for no, head in valid:
            proof = merkle.consistency_proof(source, head.tree_size, newest.tree_size)
            if not merkle.verify_consistency(
                head.tree_size, newest.tree_size, head.root_hash, newest.root_hash, proof
            ):
                problems.append(
                    Problem(
                        "head-consistency",
                        f"head {no} is not a prefix of the newest head",
                        head=no,
                        exact=False,
                    )
                )
    return problems, vouched


def _saved_head_problems(
    saved: SignedTreeHead,
    source: merkle.MemoryNodes,
    n: int,
    ids: list[str],
    public_key: Ed25519PublicKey,
) -> list[Problem]:
    """A head saved earlier (by a participant): is the journal's tree still an extension?"""
    if not saved.signature_ok(public_key):
        return [
            Problem(
                "saved-head-signature",
                f"the saved head (size {saved.tree_size}) is not signed by the operator key"
                f" {key_id(public_key)}",
                head=-1,
            )
        ]
    if saved.tree_size > n:
        return [
            Problem(
                "missing-records",
                f"the saved head signs {saved.tree_size} records but the journal holds {n}:"
                f" record {n} and later were removed",
                n,
                None,
                head=-1,
            )
        ]
    root_now = merkle.tree_root(source, saved.tree_size)
    proof = merkle.consistency_proof(source, saved.tree_size, n)
    if root_now != saved.root_hash or not merkle.verify_consistency(
        saved.tree_size, n, saved.root_hash, merkle.tree_root(source, n), proof
    ):
        start = 0
        return [
            Problem(
                "history-rewritten",
                f"the journal's first {saved.tree_size} records no longer hash to the saved"
                f" head's root (signed {saved.timestamp}): history was rewritten at or after"
                f" record {start} and before record {saved.tree_size}",
                start,
                _record_name(ids, start),
                head=-1,
                exact=False,
            )
        ]
    return []


def _as_bytes(value: Any) -> bytes:
    """A stored value that should be bytes (an edited file may hold text or numbers)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return b"" if value is None else str(value).encode("utf-8", "surrogatepass")


def _record_chunks(
    journal: Journal, from_seq: int | None = None, position: int = 0
) -> Iterator[tuple[int, list[tuple[Any, ...]]]]:
    """``(position of the first, rows)`` of the stored records (from sequence number
    ``from_seq`` on), ``_CHUNK`` at a time, data as bytes."""
    sql = "SELECT seq, record_id, kind, participant_id, data FROM journal_records"
    if from_seq is None:
        cursor = journal._conn.execute(sql + " ORDER BY seq")
    else:
        cursor = journal._conn.execute(sql + " WHERE seq >= ? ORDER BY seq", (from_seq,))
    while rows := cursor.fetchmany(_CHUNK):
        if any(type(r[4]) is not bytes for r in rows):
            rows = [(*r[:4], _as_bytes(r[4])) for r in rows]
        yield position, rows
        position += len(rows)


def verify_journal(
    journal: Journal,
    public_key: Ed25519PublicKey | None = None,
    head: SignedTreeHead | None = None,
    recheck_signed: bool = False,
) -> VerifyReport:
    """Recompute every leaf from the stored bytes and check: sequence numbers (no gap,
    duplicate or reordering), the columns of every record against its bytes, unique ids,
    the stored leaf and subtree hashes, every stored head (signature under ``public_key`` —
    the journal's stored key when None — root at its size, order, consistency with the
    newest), with ``head`` (saved earlier) that the current tree extends it, and the
    canonical form of every record no valid signed head vouches for (of all records with
    ``recheck_signed``: those under a valid head are the bytes append wrote)."""
    key = journal.public_key() if public_key is None else public_key
    # Pass 1, streamed (memory: 32 bytes and an id per record): sequence numbers, leaf
    # hashes, and the columns against the bytes.
    seq_parts, leaf_parts, ids = [], [], []
    column_problem: Problem | None = None
    for base, chunk in _record_chunks(journal):
        seq_parts.append(np.fromiter((r[0] for r in chunk), dtype=np.int64, count=len(chunk)))
        chunk_ids, datas = [r[1] for r in chunk], [r[4] for r in chunk]
        leaf_parts.append(merkle.leaf_hashes(datas))
        if column_problem is None:
            kinds, parts = [r[2] for r in chunk], [r[3] for r in chunk]
            column_problem = _canonical_problems(datas, chunk_ids, kinds, parts, base, False)
        ids.extend(chunk_ids)
    n = len(ids)
    seqs = np.concatenate(seq_parts) if seq_parts else np.empty(0, np.int64)
    leaves = np.concatenate(leaf_parts) if leaf_parts else np.empty((0, 32), np.uint8)
    problems: list[Problem] = []

    gap = np.flatnonzero(seqs != np.arange(n))
    if gap.size:
        p = int(gap[0])
        problems.append(
            Problem(
                "sequence",
                f"record {p} is missing: the next stored record ({ids[p]}) has sequence"
                f" number {int(seqs[p])}",
                p,
                ids[p],
            )
        )
    if len(set(ids)) != n:
        seen: dict[str, int] = {}
        for i, rid in enumerate(ids):
            if rid in seen:
                problems.append(
                    Problem(
                        "duplicate-id", f"record {i}: id {rid} repeats record {seen[rid]}", i, rid
                    )
                )
                break
            seen[rid] = i

    levels = merkle.build_levels(leaves) if n else []
    source = merkle.MemoryNodes(levels)
    problems.extend(_leaf_problems(journal, leaves, ids, n))
    problems.extend(_node_problems(journal, levels, ids, n))
    heads = journal.heads()
    vouched = 0
    if heads and key is None:
        raise JournalError(f"{journal.path}: no operator public key stored; pass one")
    if key is not None:
        head_problems, vouched = _head_problems(heads, source, n, ids, key)
        problems.extend(head_problems)
        if head is not None:
            problems.extend(_saved_head_problems(head, source, n, ids, key))
    elif head is not None:
        raise JournalError(f"{journal.path}: no operator public key to check the saved head")
    # Pass 2: bytes under a valid signed root are the bytes append wrote, canonical by
    # construction; re-encoding them proves nothing new, so only the rest is re-encoded
    # (all with recheck_signed): usually just the tail since the last close.
    signed = 0 if recheck_signed else vouched
    canonical_problem = None
    if signed < n:
        for base, chunk in _record_chunks(journal, int(seqs[signed]), signed):
            canonical_problem = _canonical_problems(
                [r[4] for r in chunk],
                [r[1] for r in chunk],
                [r[2] for r in chunk],
                [r[3] for r in chunk],
                base,
                True,
            )
            if canonical_problem is not None:
                break
    found = [p for p in (column_problem, canonical_problem) if p is not None]
    problems.extend(p for i, p in enumerate(found) if p not in found[:i])
    return VerifyReport(
        records=n,
        heads=len(heads),
        root_hash=merkle.tree_root(source, n),
        signed_size=vouched,
        problems=tuple(problems),
        checked={"key_id": None if key is None else key_id(key)},
    )


# --- participant bundles ------------------------------------------------------------------


def export_bundle(
    journal: Journal,
    participant_id: str | None,
    head: SignedTreeHead | None = None,
    record_ids: Sequence[str] | None = None,
) -> dict[str, Any]:
    """A participant's records with their leaf indices and inclusion proofs under ``head``
    (the newest head when None) and the signed head: nothing of anybody else but hashes.
    ``record_ids`` picks records by id instead (a single record's proof)."""
    head = journal.head() if head is None else head
    if record_ids is not None:
        picked = [(journal.index(r), journal.record(r)) for r in record_ids]
    elif participant_id is not None:
        picked = list(journal.records(participant_id=participant_id))
    else:
        raise InvalidInputError("export_bundle needs a participant_id or record ids")
    picked = [(i, r) for i, r in picked if i < head.tree_size]
    if not picked:
        who = participant_id if record_ids is None else list(record_ids)
        raise JournalError(
            f"{journal.path}: no records of {who} under the head of size {head.tree_size}"
        )
    entries = []
    for index, rec in picked:
        proof = journal._proof(merkle.inclusion_ranges(index, head.tree_size))
        entries.append({"index": index, "record": rec, "proof": [p.hex() for p in proof]})
    return {
        "format": BUNDLE_FORMAT,
        "participant_id": participant_id,
        "head": head.to_json(),
        "records": entries,
    }


def verify_bundle(bundle: Any, operator_public_key: Ed25519PublicKey) -> VerifyReport:
    """Check a bundle offline: the head's signature under the operator key the participant
    trusts, and each record's inclusion proof under that head (and that every record is the
    bundle participant's). Malformed bundles are an InvalidInputError."""
    if not isinstance(bundle, Mapping) or bundle.get("format") != BUNDLE_FORMAT:
        raise InvalidInputError(f"not a journal bundle (need format {BUNDLE_FORMAT!r})")
    head = SignedTreeHead.from_json(bundle.get("head"))
    entries = bundle.get("records")
    if not isinstance(entries, list):
        raise InvalidInputError("bundle: 'records' must be a list")
    who = bundle.get("participant_id")
    problems: list[Problem] = []
    if not head.signature_ok(operator_public_key):
        problems.append(
            Problem(
                "head-signature",
                f"the bundle's head is not signed by the operator key"
                f" {key_id(operator_public_key)}",
                head=0,
                exact=False,
            )
        )
    for pos, entry in enumerate(entries):
        try:
            index, rec = int(entry["index"]), entry["record"]
            proof = [bytes.fromhex(p) for p in entry["proof"]]
            rid = rec["id"]
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(f"bundle record {pos}: bad or missing field {exc}") from None
        leaf = merkle.leaf_hash(canonical_json(rec))
        if not merkle.verify_inclusion(leaf, index, head.tree_size, proof, head.root_hash):
            problems.append(
                Problem(
                    "inclusion",
                    f"record {index} ({rid}) is not included under the head of size"
                    f" {head.tree_size}",
                    index,
                    str(rid),
                )
            )
        if who is not None and rec.get("participant_id") != who:
            problems.append(
                Problem(
                    "participant",
                    f"record {index} ({rid}) belongs to {rec.get('participant_id')!r}, not {who!r}",
                    index,
                    str(rid),
                )
            )
    return VerifyReport(
        records=len(entries),
        heads=1,
        root_hash=head.root_hash,
        signed_size=head.tree_size,
        problems=tuple(problems),
        checked={"key_id": key_id(operator_public_key), "participant_id": who},
    )


# --- journaling record tables ---------------------------------------------------------------

RECORD_TABLES = ("bids", "awards", "dispatch", "meter", "settlement")
"""The record tables of a run (:class:`transactive.sim.results.SimResults`), journal order."""


def records_from_frame(frame: Any, kind: str) -> list[dict[str, Any]]:
    """The rows of a record table (a pandas DataFrame of a schema in
    :mod:`transactive.core.records`) as journal records: ``id`` = ``"<kind>:<row>"`` unless
    the table has an ``id`` column, ``kind``, times as RFC 3339 UTC text, NaN as null."""
    import pandas as pd

    df = frame.reset_index(drop=True)
    out = pd.DataFrame(index=df.index)
    for name in df.columns:
        col = df[name]
        if isinstance(col.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(col):
            utc = col.dt.tz_localize("UTC") if col.dt.tz is None else col.dt.tz_convert("UTC")
            col = utc.dt.strftime("%Y-%m-%dT%H:%M:%SZ").where(col.notna(), None)
        elif isinstance(col.dtype, pd.CategoricalDtype):
            col = col.astype(object)
        out[name] = col.astype(object).where(col.notna(), None)
    rows: list[dict[str, Any]] = out.to_dict(orient="records")  # type: ignore[assignment]
    if "id" not in df.columns:
        for i, row in enumerate(rows):
            row["id"] = f"{kind}:{i}"
    for row in rows:
        row["kind"] = kind
        for k, v in row.items():
            item = getattr(v, "item", None)
            if callable(item):
                row[k] = item()
    return rows


def journal_tables(
    journal: Journal,
    tables: Mapping[str, Any],
    key: Ed25519PrivateKey,
    start_column: str = "interval_start",
    duration_column: str = "duration_h",
) -> list[SignedTreeHead]:
    """Journal record ``tables`` (kind → DataFrame) market close by market close: the
    records of each interval start (all kinds, in ``tables`` order), then a head signed at
    the latest interval end so far. Rows without an interval start go first. Returns the
    new heads."""
    import pandas as pd

    pieces = []
    for kind, frame in tables.items():
        if len(frame) == 0:
            continue
        recs = records_from_frame(frame, kind)
        start = pd.to_datetime(frame[start_column], utc=True).reset_index(drop=True)
        hours = pd.to_numeric(frame[duration_column]).reset_index(drop=True)
        end = start + pd.to_timedelta(hours, unit="h")
        pieces.append(pd.DataFrame({"start": start, "end": end, "rec": recs}))
    if not pieces:
        return []
    allrows = pd.concat(pieces, ignore_index=True)
    allrows = allrows.sort_values("start", kind="stable", na_position="first")
    heads, close = [], None
    for _, group in allrows.groupby("start", sort=True, dropna=False):
        journal.append(list(group["rec"]))
        end = group["end"].max()  # a close is never before an earlier one (longer products)
        close = end if close is None or pd.isna(close) or end > close else close
        heads.append(journal.sign_head(key, close.to_pydatetime()))
    return heads
