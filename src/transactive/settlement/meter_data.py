"""Signed interval meter data: messages, meter keys, the key registry and verified ingest.

A *message* is one meter's readings over a span (the simulator signs one per meter per
local day), the JSON object::

    {"meter_id": str, "participant_id": str,
     "readings": [{"interval_start": "YYYY-MM-DDTHH:MM:SSZ", "interval_end": "…Z",
                   "import_wh": int, "export_wh": int,
                   "quality": "measured" | "estimated"}, …]}

Energy is integer Wh (the register's resolution), so the signed payload holds no binary
floats. The signed bytes are the payload's RFC 8785 canonical JSON
(:func:`canonical_bytes`); the signature is Ed25519 over them, carried on the wire as
``"signature"`` (base64url without padding) next to the payload (:func:`to_json`).

:func:`ingest` verifies a batch against a :class:`Registry` of meter public keys and the
:class:`MarketGrid`, and stores it all or nothing (:class:`IngestError` lists every
:class:`Rejection`). The :class:`MeterStore` holds readings as arrays (meter, interval,
Wh, quality, rule, message) and keeps every ingested message with its signature for audit;
:func:`meter_table` turns it into :data:`~transactive.core.records.METER` records and
:func:`sign_meter_table` turns the simulator's METER records into signed messages.
Validation of plausibility, estimation and editing are in :mod:`transactive.settlement.vee`.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from transactive.core.records import METER
from transactive.core.time import as_utc
from transactive.errors import InvalidInputError

IntArray = npt.NDArray[np.int64]

#: Quality labels; a reading's quality code is its index here.
QUALITIES: tuple[str, ...] = ("measured", "estimated")
MEASURED, ESTIMATED = 0, 1
#: How a stored reading came about; its rule code is its index here. ``meter``: as the meter
#: signed it; ``interpolated`` / ``like-day``: estimated by VEE; ``edited``: replaced by hand.
RULES: tuple[str, ...] = ("meter", "interpolated", "like-day", "edited")
METER_RULE, INTERPOLATED, LIKE_DAY, EDITED = 0, 1, 2, 3

#: Rejection codes of :func:`ingest`.
CODES: tuple[str, ...] = (
    "malformed",
    "unknown_meter",
    "wrong_participant",
    "bad_signature",
    "off_grid",
    "wrong_length",
    "outside_period",
    "duplicate",
    "negative",
    "non_integer",
    "non_finite",
    "out_of_range",
    "bad_quality",
)

MESSAGE_KEYS = frozenset({"meter_id", "participant_id", "readings"})
READING_KEYS = frozenset({"interval_start", "interval_end", "import_wh", "export_wh", "quality"})
#: Largest energy a message may carry, Wh: the I-JSON safe-integer range RFC 8785 requires.
MAX_WH = 2**53 - 1
_NS = 1_000_000_000
_TIME_LEN = len("2026-01-01T00:00:00Z")


# --- market grid -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MarketGrid:
    """The market's interval grid: ``n_intervals`` intervals of ``interval_min`` minutes
    from ``start`` (UTC, whole seconds)."""

    start: pd.Timestamp
    interval_min: int
    n_intervals: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", as_utc(self.start))
        if self.start.value % _NS:
            raise InvalidInputError(f"market grid start {self.start} is not a whole second")
        if type(self.interval_min) is not int or self.interval_min <= 0:
            raise InvalidInputError(f"interval_min must be a positive int, not {self.interval_min}")
        if type(self.n_intervals) is not int or self.n_intervals < 0:
            raise InvalidInputError(f"n_intervals must be an int ≥ 0, not {self.n_intervals}")

    @property
    def interval_ns(self) -> int:
        """Interval length, ns."""
        return self.interval_min * 60 * _NS

    @property
    def hours(self) -> float:
        """Interval length, h."""
        return self.interval_min / 60

    @property
    def starts(self) -> pd.DatetimeIndex:
        """Start of every interval, UTC."""
        return pd.date_range(self.start, periods=self.n_intervals, freq=f"{self.interval_min}min")

    @property
    def end(self) -> pd.Timestamp:
        """End of the period (exclusive), UTC."""
        return self.start + pd.Timedelta(minutes=self.interval_min * self.n_intervals)

    def slot(self, t: pd.Timestamp | str) -> int:
        """Index of the interval starting at ``t``; raises unless ``t`` is such a start."""
        ts = as_utc(t)
        k, rest = divmod(ts.value - self.start.value, self.interval_ns)
        if rest or not 0 <= k < self.n_intervals:
            raise InvalidInputError(f"{ts} is not the start of an interval of the market grid")
        return int(k)


# --- keys and registry -----------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes | None:
    """The bytes of canonical unpadded base64url ``text``; None if it is not that."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError):
        return None
    return raw if _b64(raw) == text else None


@dataclass(frozen=True, slots=True)
class MeterKey:
    """A meter's private Ed25519 key (held by the meter, never by the market)."""

    meter_id: str
    private: Ed25519PrivateKey = field(repr=False)

    @classmethod
    def from_seed(cls, meter_id: str, seed: bytes) -> MeterKey:
        """The key with the 32-byte Ed25519 private seed ``seed``."""
        return cls(meter_id, Ed25519PrivateKey.from_private_bytes(seed))

    def sign(self, data: bytes) -> str:
        """Ed25519 signature over ``data``, base64url without padding."""
        return _b64(self.private.sign(data))

    @property
    def public_bytes(self) -> bytes:
        """The raw 32-byte public key."""
        return self.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass(frozen=True, slots=True)
class KeyRing:
    """Private keys of a set of meters, by meter id (the simulator's meters)."""

    keys: Mapping[str, MeterKey]

    def __getitem__(self, meter_id: str) -> MeterKey:
        try:
            return self.keys[meter_id]
        except KeyError:
            raise InvalidInputError(f"no key for meter {meter_id!r}") from None

    def __contains__(self, meter_id: object) -> bool:
        return meter_id in self.keys

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def meter_ids(self) -> list[str]:
        """Meter ids, in the ring's order."""
        return list(self.keys)


def simulated_keys(meter_ids: Iterable[str], seed: int) -> KeyRing:
    """Deterministic keys for simulated meters: each private seed is
    SHA-256("transactive-meter-key/<seed>/<meter id>"), so a run is reproducible. Real
    meters generate and keep their own keys; only their public keys are registered."""
    ring = {}
    for m in meter_ids:
        digest = hashlib.sha256(f"transactive-meter-key/{int(seed)}/{m}".encode()).digest()
        ring[m] = MeterKey.from_seed(m, digest)
    return KeyRing(ring)


@dataclass(frozen=True, slots=True, eq=False)
class Registry:
    """Registered meters (arrays over meters, in registration order): the participant and
    node each belongs to, its raw 32-byte Ed25519 public key and ``max_kw``, the physical
    capacity of its connection (kW, ≥ 0, ``inf`` for none)."""

    meter_id: npt.NDArray[np.object_]
    participant_id: npt.NDArray[np.object_]
    node_id: npt.NDArray[np.object_]
    public_key: tuple[bytes, ...]
    max_kw: npt.NDArray[np.float64]
    _index: dict[str, int] = field(init=False, repr=False, compare=False)
    _verifiers: tuple[Ed25519PublicKey, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = len(self.meter_id)
        for name in ("participant_id", "node_id", "public_key", "max_kw"):
            if len(getattr(self, name)) != n:
                raise InvalidInputError(f"registry: {name} has {len(getattr(self, name))} ≠ {n}")
        index = {str(m): i for i, m in enumerate(self.meter_id)}
        if len(index) != n:
            dup = pd.Series(self.meter_id)[pd.Series(self.meter_id).duplicated()].iloc[0]
            raise InvalidInputError(f"registry: meter {dup!r} is registered twice")
        bad = [str(m) for m, k in zip(self.meter_id, self.public_key, strict=True) if len(k) != 32]
        if bad:
            raise InvalidInputError(f"registry: public key of meter {bad[0]!r} is not 32 bytes")
        mk = np.asarray(self.max_kw, dtype=np.float64)
        if np.isnan(mk).any() or (mk < 0).any():
            raise InvalidInputError("registry: max_kw must be ≥ 0 (inf for none)")
        object.__setattr__(self, "max_kw", mk)
        object.__setattr__(self, "_index", index)
        verifiers = tuple(Ed25519PublicKey.from_public_bytes(k) for k in self.public_key)
        object.__setattr__(self, "_verifiers", verifiers)

    @classmethod
    def from_keys(
        cls,
        keys: KeyRing,
        participant_id: Mapping[str, str],
        node_id: Mapping[str, str],
        max_kw: Mapping[str, float] | float = np.inf,
    ) -> Registry:
        """The registry of every meter of ``keys`` (their public keys) with its participant,
        node and capacity (kW; one number for all, or per meter)."""
        ids = keys.meter_ids
        missing = [m for m in ids if m not in participant_id or m not in node_id]
        if missing:
            raise InvalidInputError(f"registry: no participant/node for meter {missing[0]!r}")
        cap = [max_kw[m] if isinstance(max_kw, Mapping) else max_kw for m in ids]
        return cls(
            np.array(ids, dtype=object),
            np.array([participant_id[m] for m in ids], dtype=object),
            np.array([node_id[m] for m in ids], dtype=object),
            tuple(keys[m].public_bytes for m in ids),
            np.array(cap, dtype=np.float64),
        )

    @classmethod
    def from_meter_table(
        cls, meter: pd.DataFrame, keys: KeyRing, max_kw: Mapping[str, float] | float = np.inf
    ) -> Registry:
        """The registry of the meters of a METER records table (participant and node as the
        table gives them), with their keys from ``keys``."""
        pairs = meter[["resource_id", "participant_id", "node_id"]].astype(str).drop_duplicates()
        if pairs["resource_id"].duplicated().any():
            m = pairs.loc[pairs["resource_id"].duplicated(), "resource_id"].iloc[0]
            raise InvalidInputError(f"meter {m!r} has more than one participant or node")
        ring = KeyRing({m: keys[m] for m in pairs["resource_id"]})
        part = dict(zip(pairs["resource_id"], pairs["participant_id"], strict=True))
        node = dict(zip(pairs["resource_id"], pairs["node_id"], strict=True))
        return cls.from_keys(ring, part, node, max_kw)

    def __len__(self) -> int:
        return len(self.meter_id)

    def index(self, meter_id: str) -> int:
        """Position of a meter; −1 if it is not registered."""
        return self._index.get(meter_id, -1)

    def verify(self, i: int, signature: bytes, data: bytes) -> bool:
        """Whether ``signature`` is meter ``i``'s Ed25519 signature over ``data``."""
        try:
            self._verifiers[i].verify(signature, data)
        except InvalidSignature:
            return False
        return True


# --- messages --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    """One signed message: the payload (a parsed JSON object) and its signature."""

    payload: Mapping[str, Any]
    signature: str


def canonical_bytes(payload: Mapping[str, Any]) -> bytes:
    """The payload's RFC 8785 canonical JSON, the bytes a meter signs."""
    return rfc8785.dumps(payload)


def _canonical_fast(payload: Mapping[str, Any]) -> bytes:
    """:func:`canonical_bytes` of a payload already checked to hold only strings, lists,
    objects with ASCII keys and safe integers: for those RFC 8785 is exactly sorted keys, no
    whitespace and JSON's minimal string escapes, which the C json encoder writes ~10× faster
    (the tests cross-check it with :func:`canonical_bytes`)."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()


def sign_payload(payload: Mapping[str, Any], key: MeterKey) -> Message:
    """The payload signed with ``key``."""
    return Message(payload, key.sign(canonical_bytes(payload)))


def iso_utc(times: pd.DatetimeIndex | npt.NDArray[np.int64]) -> npt.NDArray[np.str_]:
    """Times (UTC, whole seconds; a DatetimeIndex or ns since the epoch) as the messages'
    ``YYYY-MM-DDTHH:MM:SSZ`` strings."""
    ns = np.asarray(times.asi8 if isinstance(times, pd.DatetimeIndex) else times, np.int64)
    if (ns % _NS).any():
        raise InvalidInputError("reading times must be whole seconds")
    return np.char.add(np.datetime_as_string((ns // _NS).astype("datetime64[s]"), unit="s"), "Z")


def make_message(
    key: MeterKey,
    participant_id: str,
    interval_start: pd.DatetimeIndex,
    interval_end: pd.DatetimeIndex,
    import_wh: npt.ArrayLike,
    export_wh: npt.ArrayLike,
    quality: npt.ArrayLike | str = "measured",
) -> Message:
    """A message of ``key``'s meter (readings as arrays: UTC starts and ends, Wh ints,
    quality labels), signed."""
    n = len(interval_start)
    q = np.broadcast_to(np.asarray(quality, dtype=object), (n,))
    return _signed(
        key, participant_id, *_reading_lists(interval_start, interval_end), import_wh, export_wh, q
    )


def _reading_lists(start: pd.DatetimeIndex, end: pd.DatetimeIndex) -> tuple[list[str], list[str]]:
    return iso_utc(pd.DatetimeIndex(start)).tolist(), iso_utc(pd.DatetimeIndex(end)).tolist()


def _signed(
    key: MeterKey,
    participant_id: str,
    starts: list[str],
    ends: list[str],
    import_wh: npt.ArrayLike,
    export_wh: npt.ArrayLike,
    quality: npt.ArrayLike,
) -> Message:
    wh = [np.asarray(import_wh), np.asarray(export_wh)]
    plain = all(v.dtype.kind in "iu" and (np.abs(v) <= MAX_WH).all() for v in wh)
    imp, exp = wh[0].tolist(), wh[1].tolist()
    q = np.asarray(quality, dtype=object).tolist()
    readings = [
        {"interval_start": s, "interval_end": e, "import_wh": i, "export_wh": x, "quality": k}
        for s, e, i, x, k in zip(starts, ends, imp, exp, q, strict=True)
    ]
    payload = {"meter_id": key.meter_id, "participant_id": participant_id, "readings": readings}
    plain = plain and all(type(k) is str for k in q) and type(participant_id) is str
    data = _canonical_fast(payload) if plain else canonical_bytes(payload)
    return Message(payload, key.sign(data))


def to_json(message: Message) -> str:
    """The message on the wire: the payload with its ``"signature"``, compact JSON with
    sorted keys (any JSON encoding of it verifies: the signature is over the payload's
    canonical bytes, recomputed on ingest)."""
    if "signature" in message.payload:
        raise InvalidInputError("payload must not contain a 'signature' key")
    wire = {**message.payload, "signature": message.signature}
    return json.dumps(wire, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        keys = [k for k, _ in pairs]
        dup = next(k for i, k in enumerate(keys) if k in keys[:i])
        raise InvalidInputError(f"message JSON has the key {dup!r} twice")
    return out


def from_json(text: str | bytes) -> Message:
    """A message from the wire (:func:`to_json`). Raises :class:`InvalidInputError` for text
    that is not a JSON object with a string ``"signature"`` or has a key twice; the payload
    itself is checked by :func:`ingest`."""
    try:
        obj = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InvalidInputError(f"message is not JSON: {e}") from None
    if not isinstance(obj, dict):
        raise InvalidInputError(f"message is a JSON {type(obj).__name__}, not an object")
    signature = obj.pop("signature", None)
    if not isinstance(signature, str):
        raise InvalidInputError("message has no string 'signature'")
    return Message(obj, signature)


# --- store -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignedPayload:
    """A stored message as it was verified: the meter, the payload's canonical bytes and the
    signature over them (one bytes object per message, re-verifiable offline)."""

    meter_id: str
    data: bytes
    signature: str

    def message(self) -> Message:
        """The message again (payload parsed from the canonical bytes)."""
        return Message(json.loads(self.data), self.signature)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One change to a stored reading: what it was (None: no reading), what it became, and
    why. ``action``: ``edit`` (by hand) or ``measured-replaces-estimate``."""

    meter_id: str
    interval_start: pd.Timestamp
    action: str
    old: tuple[int, int, str, str] | None  # import_wh, export_wh, quality, rule
    new: tuple[int, int, str, str]
    reason: str


@dataclass(eq=False)
class MeterStore:
    """Stored readings of the registered meters on one market grid, as arrays sorted by
    (meter, interval), one row per meter and interval: ``meter`` (index into ``meter_ids``),
    ``interval`` (index into the grid), ``import_wh``/``export_wh`` (Wh), ``quality``
    (index into :data:`QUALITIES`), ``rule`` (index into :data:`RULES`) and ``message``
    (index into ``messages``, the verified messages as :class:`SignedPayload`; −1 for VEE's
    estimates and hand-added edits). ``audit`` lists every change made to a stored reading."""

    grid: MarketGrid
    meter_ids: tuple[str, ...]
    meter: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))
    interval: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))
    import_wh: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))
    export_wh: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))
    quality: npt.NDArray[np.int8] = field(default_factory=lambda: np.zeros(0, np.int8))
    rule: npt.NDArray[np.int8] = field(default_factory=lambda: np.zeros(0, np.int8))
    message: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))
    messages: list[SignedPayload] = field(default_factory=list)
    audit: list[AuditEntry] = field(default_factory=list)

    @classmethod
    def for_registry(cls, registry: Registry, grid: MarketGrid) -> MeterStore:
        """An empty store for the meters of ``registry`` on ``grid``."""
        return cls(grid, tuple(str(m) for m in registry.meter_id))

    def __len__(self) -> int:
        return len(self.meter)

    @property
    def key(self) -> IntArray:
        """meter × n_intervals + interval of every row (sorted, unique)."""
        return self.meter * self.grid.n_intervals + self.interval

    def find(self, keys: IntArray) -> IntArray:
        """Row of each key (meter × n_intervals + interval); −1 where nothing is stored."""
        k = self.key
        pos = np.searchsorted(k, keys)
        ok = pos < len(k)
        ok[ok] = k[pos[ok]] == keys[ok]
        return np.where(ok, pos, -1)

    def add(
        self,
        meter: IntArray,
        interval: IntArray,
        import_wh: IntArray,
        export_wh: IntArray,
        quality: npt.ArrayLike,
        rule: npt.ArrayLike,
        message: npt.ArrayLike,
    ) -> None:
        """Add new rows (their (meter, interval) must not be stored yet; checked)."""
        n = len(meter)
        cols: dict[str, npt.NDArray[Any]] = {
            "meter": np.asarray(meter, np.int64),
            "interval": np.asarray(interval, np.int64),
            "import_wh": np.asarray(import_wh, np.int64),
            "export_wh": np.asarray(export_wh, np.int64),
            "quality": np.broadcast_to(np.asarray(quality, np.int8), (n,)),
            "rule": np.broadcast_to(np.asarray(rule, np.int8), (n,)),
            "message": np.broadcast_to(np.asarray(message, np.int64), (n,)),
        }
        new_key = cols["meter"] * self.grid.n_intervals + cols["interval"]
        both = np.concatenate([self.key, new_key])
        order = np.argsort(both, kind="stable")
        if (np.diff(both[order]) == 0).any():
            raise InvalidInputError("meter store: a reading for that meter and interval exists")
        for name, v in cols.items():
            setattr(self, name, np.concatenate([getattr(self, name), v])[order])

    def table(self) -> pd.DataFrame:
        """The stored readings as a table (ids, UTC start, Wh, quality and rule labels,
        message index)."""
        return pd.DataFrame(
            {
                "meter_id": np.array(self.meter_ids, dtype=object)[self.meter],
                "interval_start": self.grid.starts[self.interval],
                "import_wh": self.import_wh,
                "export_wh": self.export_wh,
                "quality": np.array(QUALITIES, dtype=object)[self.quality],
                "rule": np.array(RULES, dtype=object)[self.rule],
                "message": self.message,
            }
        )


# --- ingest ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why one message (or one of its readings) was rejected: the meter (None if the message
    names none), the message's index in the batch, the reading's ``interval_start`` as sent
    (None for the whole message), a code of :data:`CODES` and a readable reason."""

    meter_id: str | None
    message: int
    interval_start: str | None
    code: str
    reason: str

    def __str__(self) -> str:
        at = f", interval {self.interval_start}" if self.interval_start is not None else ""
        return f"message {self.message} (meter {self.meter_id!r}{at}): {self.code}: {self.reason}"


class IngestError(InvalidInputError):
    """A batch of meter messages was rejected (nothing was stored); ``rejections`` lists
    every reason."""

    def __init__(self, rejections: Sequence[Rejection]) -> None:
        self.rejections = list(rejections)
        shown = "\n  ".join(str(r) for r in self.rejections[:20])
        more = f"\n  … and {len(self.rejections) - 20} more" if len(self.rejections) > 20 else ""
        super().__init__(f"{len(self.rejections)} rejection(s), nothing stored:\n  {shown}{more}")


@dataclass(frozen=True, slots=True)
class IngestReport:
    """What an accepted batch added: messages, readings, and how many of those readings
    were measured values replacing VEE estimates (each recorded in the store's audit)."""

    messages: int
    readings: int
    replaced_estimates: int


@dataclass(slots=True)
class _Parsed:
    """The checked columns of one message (times in ns since the epoch, UTC)."""

    meter: int
    signed: SignedPayload
    start_text: list[str | None]
    start: IntArray
    end: IntArray
    import_wh: IntArray
    export_wh: IntArray
    quality: npt.NDArray[np.int8]


def _time_ns(v: Any) -> int | None:
    """ns since the epoch of one ``YYYY-MM-DDTHH:MM:SSZ`` string; None if it is not one."""
    if type(v) is not str or len(v) != _TIME_LEN or v[-1] != "Z":
        return None
    try:
        ns = int(np.datetime64(v[:-1], "s").astype(np.int64)) * _NS
    except ValueError:
        return None
    return ns if iso_utc(np.array([ns]))[0] == v else None


def _times(values: list[Any]) -> tuple[IntArray, list[int]]:
    """ns since the epoch of ``YYYY-MM-DDTHH:MM:SSZ`` strings (all at once when they all
    are), and the positions of those that are not."""
    if all(type(v) is str and len(v) == _TIME_LEN and v[-1] == "Z" for v in values):
        body = np.array([v[:-1] for v in values])
        try:
            t = body.astype("datetime64[s]")
        except ValueError:
            t = None
        if t is not None and (np.datetime_as_string(t, unit="s") == body).all():
            return t.astype(np.int64) * _NS, []
    got = [_time_ns(v) for v in values]
    return np.array([g or 0 for g in got], np.int64), [j for j, g in enumerate(got) if g is None]


def _energy(values: list[Any], name: str, reject: Any) -> tuple[IntArray | None, bool]:
    """Wh ints of one energy column; calls ``reject(j, code, reason)`` per bad value.
    Returns (values or None if unusable, whether the payload can still be canonicalised)."""
    if all(type(v) is int for v in values):
        arr = np.array(values, dtype=object)
        big = (arr > MAX_WH) | (arr < -MAX_WH)
        if big.any():
            for b in np.flatnonzero(big):
                reject(int(b), "out_of_range", f"{name} {values[b]} is beyond ±{MAX_WH} Wh")
            return None, False
        out = arr.astype(np.int64)
        for b in np.flatnonzero(out < 0):
            reject(int(b), "negative", f"{name} {values[b]} Wh is negative")
        return out, True
    for j, v in enumerate(values):
        if type(v) is int:
            if abs(v) > MAX_WH:
                reject(j, "out_of_range", f"{name} {v} is beyond ±{MAX_WH} Wh")
            elif v < 0:
                reject(j, "negative", f"{name} {v} Wh is negative")
        elif type(v) is float and not np.isfinite(v):
            reject(j, "non_finite", f"{name} {v} is not finite")
        elif type(v) is float:
            reject(j, "non_integer", f"{name} {v!r} is not an integer number of Wh")
        else:
            reject(j, "malformed", f"{name} {v!r} is a {type(v).__name__}, not an int")
    return None, False


def _check_message(i: int, m: Any, registry: Registry, out: list[Rejection]) -> _Parsed | None:
    """Check one message's shape, meter, values and signature, appending every problem to
    ``out``; its parsed columns if it has none."""
    n0 = len(out)
    p = m.payload if isinstance(m, Message) else None
    if not isinstance(p, dict):
        out.append(Rejection(None, i, None, "malformed", "not a Message with an object payload"))
        return None
    meter_id = p.get("meter_id")
    mid = meter_id if isinstance(meter_id, str) else None

    def bad(code: str, reason: str, start: str | None = None) -> None:
        out.append(Rejection(mid, i, start, code, reason))

    if set(p) != MESSAGE_KEYS:
        bad(
            "malformed",
            f"missing keys {sorted(MESSAGE_KEYS - set(p))}, "
            f"unknown keys {sorted(set(p) - MESSAGE_KEYS, key=str)}",
        )
        return None
    part, readings = p["participant_id"], p["readings"]
    if mid is None or type(part) is not str:
        bad("malformed", "meter_id and participant_id must be strings")
        return None
    if type(readings) is not list or not readings:
        bad("malformed", "readings must be a non-empty list")
        return None
    if not isinstance(m.signature, str):
        bad("malformed", "signature must be a string")
        return None
    shape = [j for j, r in enumerate(readings) if type(r) is not dict or r.keys() != READING_KEYS]
    for j in shape:
        r = readings[j]
        keys = set(r) if isinstance(r, dict) else set()
        s = r.get("interval_start") if isinstance(r, dict) else None
        bad(
            "malformed",
            f"reading {j}: missing keys {sorted(READING_KEYS - keys)}, "
            f"unknown keys {sorted(keys - READING_KEYS, key=str)}",
            s if isinstance(s, str) else None,
        )
    if shape:
        return None
    k = registry.index(mid)
    if k < 0:
        bad("unknown_meter", f"meter {mid!r} is not registered")
        return None
    if part != registry.participant_id[k]:
        bad(
            "wrong_participant",
            f"participant {part!r} is not the meter's registered "
            f"participant {registry.participant_id[k]!r}",
        )

    starts = [r["interval_start"] for r in readings]
    ends = [r["interval_end"] for r in readings]
    start_text = [s if isinstance(s, str) else None for s in starts]

    def reject(j: int, code: str, reason: str) -> None:
        bad(code, f"reading {j}: {reason}", start_text[j])

    t0, bad_start = _times(starts)
    t1, bad_end = _times(ends)
    for j in bad_start:
        reject(j, "malformed", f"interval_start {starts[j]!r} is not YYYY-MM-DDTHH:MM:SSZ")
    for j in bad_end:
        reject(j, "malformed", f"interval_end {ends[j]!r} is not YYYY-MM-DDTHH:MM:SSZ")
    imp, ok_i = _energy([r["import_wh"] for r in readings], "import_wh", reject)
    exp, ok_e = _energy([r["export_wh"] for r in readings], "export_wh", reject)
    q_raw = [r["quality"] for r in readings]
    q = np.array([QUALITIES.index(v) if v in QUALITIES else -1 for v in q_raw], np.int8)
    for b in np.flatnonzero(q < 0):
        reject(int(b), "bad_quality", f"quality {q_raw[b]!r} is not one of {list(QUALITIES)}")
    strings_ok = not bad_start and not bad_end and (q >= 0).all()
    data = b""
    if ok_i and ok_e and strings_ok:
        sig = _unb64(m.signature)
        try:
            data = _canonical_fast(p)
        except UnicodeEncodeError:
            bad("malformed", "ids are not valid Unicode (lone surrogate)")
            return None
        if sig is None or len(sig) != 64:
            bad("bad_signature", "signature is not 64 bytes of unpadded base64url")
        elif not registry.verify(k, sig, data):
            bad("bad_signature", f"signature does not verify with meter {mid!r}'s key")
    if len(out) > n0 or imp is None or exp is None:
        return None
    return _Parsed(k, SignedPayload(mid, data, m.signature), start_text, t0, t1, imp, exp, q)


def _check_batch(
    parsed: list[tuple[int, _Parsed]], store: MeterStore, registry: Registry, out: list[Rejection]
) -> tuple[IntArray, IntArray, IntArray, list[int]]:
    """Grid and duplicate checks over all readings of the batch (vectorised), appending every
    problem to ``out``. Returns each reading's meter, slot, store row (−1: new) and message."""
    grid = store.grid
    msg = np.concatenate([np.full(len(p.start), i, np.int64) for i, p in parsed])
    meter = np.concatenate([np.full(len(p.start), p.meter, np.int64) for _, p in parsed])
    t0 = np.concatenate([p.start for _, p in parsed])
    t1 = np.concatenate([p.end for _, p in parsed])
    quality = np.concatenate([p.quality for _, p in parsed])
    text = [s for _, p in parsed for s in p.start_text]
    off = t0 - grid.start.value
    slot, rest = np.divmod(off, grid.interval_ns)
    problems = (
        ("off_grid", rest != 0, "does not start on the market grid"),
        ("wrong_length", t1 - t0 != grid.interval_ns, f"does not last {grid.interval_min} min"),
        (
            "outside_period",
            (slot < 0) | (slot >= grid.n_intervals),
            f"is outside the period {grid.start} – {grid.end}",
        ),
    )
    ok = np.ones(len(t0), bool)
    for code, mask, what in problems:
        for j in np.flatnonzero(mask):
            out.append(
                Rejection(
                    registry.meter_id[meter[j]], int(msg[j]), text[j], code, f"the reading {what}"
                )
            )
        ok &= ~mask
    key = np.where(ok, meter * grid.n_intervals + slot, -1 - np.arange(len(t0)))
    order = np.argsort(key, kind="stable")
    ks = key[order]
    again = np.zeros(len(key), bool)
    again[order[1:]] = ks[1:] == ks[:-1]
    first = order[np.searchsorted(ks, key)]
    for j in np.flatnonzero(again):
        out.append(
            Rejection(
                registry.meter_id[meter[j]],
                int(msg[j]),
                text[j],
                "duplicate",
                f"the interval is sent twice in the batch (first in message {msg[first[j]]})",
            )
        )
    row = np.where(ok, store.find(key), -1)
    # a measured reading may replace a VEE estimate; anything else already stored is a duplicate
    stored = row >= 0
    replace = stored.copy()
    replace[stored] = np.isin(store.rule[row[stored]], (INTERPOLATED, LIKE_DAY)) & (
        quality[stored] == MEASURED
    )
    for j in np.flatnonzero(stored & ~replace & ~again):
        out.append(
            Rejection(
                registry.meter_id[meter[j]],
                int(msg[j]),
                text[j],
                "duplicate",
                "a reading for this meter and interval is already stored",
            )
        )
    return meter, slot, row, msg.tolist()


def ingest(
    store: MeterStore, messages: Sequence[Message], registry: Registry, grid: MarketGrid
) -> IngestReport:
    """Verify a batch of signed messages and store all of it, or nothing.

    Rejected (each a :class:`Rejection` naming meter, message index and interval; all of them
    raised together as :class:`IngestError`, the store left unchanged): a malformed message
    (missing or unknown keys, wrong types, times not ``YYYY-MM-DDTHH:MM:SSZ``), an unknown
    meter, a participant that is not the meter's, a signature that does not verify over the
    payload's canonical bytes, a reading that is off the grid, not one interval long or
    outside the period, a duplicate (in the batch, or already stored — an identical re-send
    too), energy that is negative, not an integer, not finite or beyond 2⁵³ Wh, and a quality
    that is not ``measured``/``estimated``. Import and export may both be > 0 in one interval.
    A measured reading for an interval holding a VEE estimate replaces it (audited)."""
    if store.grid != grid:
        raise InvalidInputError(f"the store is for the grid {store.grid}, not {grid}")
    if store.meter_ids != tuple(str(m) for m in registry.meter_id):
        raise InvalidInputError("the store was made for a different registry of meters")
    out: list[Rejection] = []
    parsed = []
    for i, m in enumerate(messages):
        p = _check_message(i, m, registry, out)
        if p is not None:
            parsed.append((i, p))
    if not parsed:
        if out:
            raise IngestError(out)
        return IngestReport(len(messages), 0, 0)
    meter, slot, row, msg = _check_batch(parsed, store, registry, out)
    if out:
        raise IngestError(sorted(out, key=lambda r: (r.message, r.interval_start or "")))
    imp = np.concatenate([p.import_wh for _, p in parsed])
    exp = np.concatenate([p.export_wh for _, p in parsed])
    q = np.concatenate([p.quality for _, p in parsed])
    base = len(store.messages)
    msg_arr = base + np.asarray(msg, np.int64)
    rep = np.flatnonzero(row >= 0)
    for j in rep:
        r = row[j]
        store.audit.append(
            AuditEntry(
                store.meter_ids[meter[j]],
                grid.starts[slot[j]],
                "measured-replaces-estimate",
                (
                    int(store.import_wh[r]),
                    int(store.export_wh[r]),
                    QUALITIES[store.quality[r]],
                    RULES[store.rule[r]],
                ),
                (int(imp[j]), int(exp[j]), QUALITIES[q[j]], RULES[METER_RULE]),
                f"measured reading arrived in message {msg_arr[j]}",
            )
        )
    r = row[rep]
    store.import_wh[r], store.export_wh[r], store.quality[r] = imp[rep], exp[rep], q[rep]
    store.rule[r], store.message[r] = METER_RULE, msg_arr[rep]
    new = row < 0
    store.add(meter[new], slot[new], imp[new], exp[new], q[new], METER_RULE, msg_arr[new])
    store.messages.extend(p.signed for _, p in parsed)
    return IngestReport(len(messages), len(row), len(rep))


def audit_signatures(store: MeterStore, registry: Registry) -> list[int]:
    """Indices of the stored messages whose signature no longer verifies with their meter's
    registered key (empty when the store's signed data is intact)."""
    bad = []
    for i, sp in enumerate(store.messages):
        k, sig = registry.index(sp.meter_id), _unb64(sp.signature)
        if k < 0 or sig is None or not registry.verify(k, sig, sp.data):
            bad.append(i)
    return bad


# --- records ---------------------------------------------------------------------------


def meter_table(
    store: MeterStore,
    registry: Registry,
    design: str,
    market_id: str | Mapping[str, str],
    stage: str,
) -> pd.DataFrame:
    """The stored readings as :data:`~transactive.core.records.METER` records (kWh), sorted
    by interval then meter; participant and node from ``registry``; ``market_id``: one for
    all, or per meter id."""
    if store.meter_ids != tuple(str(m) for m in registry.meter_id):
        raise InvalidInputError("the store was made for a different registry of meters")
    order = np.lexsort((store.meter, store.interval))
    m, k = store.meter[order], store.interval[order]
    if isinstance(market_id, Mapping):
        missing = [x for x in store.meter_ids if x not in market_id]
        if missing:
            raise InvalidInputError(f"no market_id for meter {missing[0]!r}")
        market: Any = np.array([market_id[x] for x in store.meter_ids], dtype=object)[m]
    else:
        market = market_id
    return METER.frame(
        {
            "design": design,
            "market_id": market,
            "stage": stage,
            "interval_start": store.grid.starts[k],
            "duration_h": store.grid.hours,
            "participant_id": registry.participant_id[m],
            "resource_id": registry.meter_id[m],
            "node_id": registry.node_id[m],
            "import_kwh": store.import_wh[order] / 1000.0,
            "export_kwh": store.export_wh[order] / 1000.0,
            "quality": pd.Categorical.from_codes(
                store.quality[order].astype(np.int64), categories=pd.Index(QUALITIES)
            ),
        }
    )


def to_wh(kwh: npt.ArrayLike) -> IntArray:
    """kWh as integer Wh, rounded half to even."""
    return np.rint(np.asarray(kwh, dtype=np.float64) * 1000.0).astype(np.int64)


def sign_meter_table(meter: pd.DataFrame, keys: KeyRing, timezone: str) -> list[Message]:
    """Signed messages of a METER records table of one design: one per meter (resource id)
    per local day in ``timezone``, readings in time order, Wh = kWh × 1000 rounded half to
    even. Raises :class:`InvalidInputError` for several designs, a meter without a key or
    with two participants, or energy that is negative or not finite."""
    METER.check(meter)
    if meter["design"].nunique() > 1:
        raise InvalidInputError(
            f"meter table has several designs {sorted(meter['design'].unique())}"
        )
    if not len(meter):
        return []
    res = meter["resource_id"].astype(str).to_numpy()
    ids, m = np.unique(res, return_inverse=True)
    missing = [x for x in ids if x not in keys]
    if missing:
        raise InvalidInputError(f"no key for meter {missing[0]!r}")
    part = meter["participant_id"].astype(str).to_numpy()
    pairs = pd.DataFrame({"m": m, "p": part}).drop_duplicates()
    if pairs["m"].duplicated().any():
        raise InvalidInputError(
            f"meter {ids[pairs.loc[pairs['m'].duplicated(), 'm'].iloc[0]]!r} "
            "has more than one participant"
        )
    kwh = meter[["import_kwh", "export_kwh"]].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(kwh).all(axis=1) | (kwh < -0.0005).any(axis=1)
    if bad.any():
        j = int(np.flatnonzero(bad)[0])
        raise InvalidInputError(
            f"meter {res[j]!r} at {meter['interval_start'].iloc[j]}: energy "
            f"{kwh[j].tolist()} kWh is negative or not finite"
        )
    wh = np.maximum(to_wh(kwh), 0)
    start = pd.DatetimeIndex(meter["interval_start"])
    t0 = start.asi8
    t1 = t0 + np.rint(meter["duration_h"].to_numpy(np.float64) * 3600 * _NS).astype(np.int64)
    local = start.tz_convert(timezone).tz_localize(None).normalize().asi8
    order = np.lexsort((t0, local, m))
    cut = np.flatnonzero((np.diff(m[order]) != 0) | (np.diff(local[order]) != 0)) + 1
    s_txt, e_txt = iso_utc(t0[order]).tolist(), iso_utc(t1[order]).tolist()
    imp, exp = wh[order, 0], wh[order, 1]
    qual = meter["quality"].astype(str).to_numpy(dtype=object)[order]
    msgs = []
    for a, b in zip(np.r_[0, cut], np.r_[cut, len(order)], strict=True):
        j = order[a]
        msgs.append(
            _signed(keys[ids[m[j]]], part[j], s_txt[a:b], e_txt[a:b], imp[a:b], exp[a:b], qual[a:b])
        )
    return msgs


#: Columns of the registry as a table (:func:`registry_table`).
REGISTRY_COLUMNS = ("meter_id", "participant_id", "node_id", "public_key", "max_kw")


def registry_table(registry: Registry) -> pd.DataFrame:
    """The registry as a table (:data:`REGISTRY_COLUMNS`; public_key as 64 hex digits of
    the raw Ed25519 key, max_kw in kW, inf for none)."""
    return pd.DataFrame(
        {
            "meter_id": registry.meter_id.astype(str),
            "participant_id": registry.participant_id.astype(str),
            "node_id": registry.node_id.astype(str),
            "public_key": [k.hex() for k in registry.public_key],
            "max_kw": registry.max_kw,
        }
    )


def registry_from_table(table: pd.DataFrame, source: str = "meters") -> Registry:
    """The registry of a :func:`registry_table` table; errors name ``source``, the row
    (1-based) and the column."""
    missing = [c for c in REGISTRY_COLUMNS if c not in table.columns]
    if missing:
        raise InvalidInputError(f"{source}: missing columns {missing}")
    keys = []
    for i, text in enumerate(table["public_key"].astype(str)):
        try:
            key = bytes.fromhex(text)
        except ValueError:
            key = b""
        if len(key) != 32:
            raise InvalidInputError(
                f"{source}: row {i + 1}, column public_key: not 64 hex digits of an Ed25519 key"
            )
        keys.append(key)
    max_kw = pd.to_numeric(table["max_kw"], errors="coerce").to_numpy(dtype=np.float64)
    if np.isnan(max_kw).any():
        i = int(np.flatnonzero(np.isnan(max_kw))[0])
        raise InvalidInputError(f"{source}: row {i + 1}, column max_kw: not a number")
    try:
        return Registry(
            table["meter_id"].astype(str).to_numpy(dtype=object),
            table["participant_id"].astype(str).to_numpy(dtype=object),
            table["node_id"].astype(str).to_numpy(dtype=object),
            tuple(keys),
            max_kw,
        )
    except InvalidInputError as exc:
        raise InvalidInputError(f"{source}: {exc}") from None
