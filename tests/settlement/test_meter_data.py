"""Signed meter data: canonical bytes, keys, every ingest rejection (atomic), round trips."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from transactive.core.records import METER
from transactive.errors import InvalidInputError
from transactive.settlement.meter_data import (
    IngestError,
    MarketGrid,
    Message,
    MeterStore,
    Registry,
    SignedPayload,
    _canonical_fast,
    audit_signatures,
    canonical_bytes,
    from_json,
    ingest,
    make_message,
    meter_table,
    sign_meter_table,
    sign_payload,
    simulated_keys,
    to_json,
)

T0 = pd.Timestamp("2026-07-01T00:00Z")
GRID = MarketGrid(T0, 15, 96)
METERS = ("meter:home:a/0", "meter:home:a/1", "meter:agg:x/a/b1")
PART = {"meter:home:a/0": "home:a/0", "meter:home:a/1": "home:a/1", "meter:agg:x/a/b1": "agg:x"}
NODE = {m: m.removeprefix("meter:") for m in METERS}
KEYS = simulated_keys(METERS, seed=11)
REG = Registry.from_keys(KEYS, PART, NODE, max_kw=20.0)
Q = pd.Timedelta(minutes=15)


def day_message(meter: str = METERS[0], first: int = 0, n: int = 4, **kw: Any) -> Message:
    """A signed message of ``n`` readings of ``meter`` from grid interval ``first``."""
    starts = kw.pop("starts", GRID.starts[first : first + n])
    return make_message(
        KEYS[meter],
        kw.pop("participant", PART[meter]),
        starts,
        kw.pop("ends", starts + Q),
        kw.pop("import_wh", np.arange(n) * 10 + 100),
        kw.pop("export_wh", np.zeros(n, np.int64)),
        kw.pop("quality", "measured"),
    )


def snapshot(store: MeterStore) -> tuple[object, ...]:
    return (store.table().to_dict("list"), len(store.messages), len(store.audit))


def filled_store() -> MeterStore:
    store = MeterStore.for_registry(REG, GRID)
    ingest(store, [day_message(m, 0, 8) for m in METERS], REG, GRID)
    return store


def resigned(payload: dict[str, Any], meter: str = METERS[0]) -> Message:
    return sign_payload(payload, KEYS[meter])


def mutate(change: Callable[[dict[str, Any]], None], sign: bool = True) -> Message:
    """A valid message with its payload changed (re-signed, so only the change is wrong)."""
    payload = json.loads(json.dumps(day_message(first=20).payload))
    change(payload)
    if sign:
        return resigned(payload)
    return Message(payload, day_message(first=20).signature)


def first_reading(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(p: dict[str, Any]) -> None:
        p["readings"][0][key] = value

    return change


def flip_import_digit(message: Message) -> Message:
    """The wire text with one byte of the payload changed (a digit of an import_wh)."""
    text = to_json(message)
    at = text.index('"import_wh":') + len('"import_wh":')
    flipped = text[:at] + str((int(text[at]) + 1) % 10) + text[at + 1 :]
    return from_json(flipped)


OTHER = simulated_keys(["meter:stranger"], seed=11)["meter:stranger"]
CASES: dict[str, tuple[Callable[[], Message], str]] = {
    "bad signature (one payload byte flipped)": (
        lambda: flip_import_digit(day_message(first=20)),
        "bad_signature",
    ),
    "signature of another payload": (
        lambda: Message(day_message(first=20).payload, day_message(first=21).signature),
        "bad_signature",
    ),
    "signature not base64url": (
        lambda: Message(day_message(first=20).payload, "not a signature!"),
        "bad_signature",
    ),
    "unknown meter": (
        lambda: make_message(OTHER, "x", GRID.starts[:2], GRID.starts[:2] + Q, [1, 2], [0, 0]),
        "unknown_meter",
    ),
    "wrong participant": (
        lambda: day_message(first=20, participant="home:a/1"),
        "wrong_participant",
    ),
    "off-grid start": (
        lambda: day_message(starts=GRID.starts[20:24] + pd.Timedelta(minutes=5)),
        "off_grid",
    ),
    "wrong length": (
        lambda: day_message(ends=GRID.starts[20:24] + pd.Timedelta(minutes=30)),
        "wrong_length",
    ),
    "outside period (before)": (
        lambda: day_message(starts=GRID.starts[:4] - pd.Timedelta(hours=2)),
        "outside_period",
    ),
    "outside period (after)": (
        lambda: day_message(starts=GRID.starts[-4:] + pd.Timedelta(hours=2)),
        "outside_period",
    ),
    "negative import": (lambda: day_message(first=20, import_wh=[5, -1, 5, 5]), "negative"),
    "negative export": (lambda: day_message(first=20, export_wh=[0, 0, 0, -3]), "negative"),
    "NaN": (lambda: mutate(first_reading("import_wh", float("nan")), sign=False), "non_finite"),
    "inf": (lambda: mutate(first_reading("export_wh", float("inf")), sign=False), "non_finite"),
    "float Wh": (lambda: mutate(first_reading("import_wh", 12.5)), "non_integer"),
    "integral float Wh": (lambda: mutate(first_reading("import_wh", 12.0)), "non_integer"),
    "float Wh signed by make_message": (
        lambda: day_message(first=20, import_wh=[1.5, 2.0, 3.0, 1e21]),
        "non_integer",
    ),
    "beyond 2^53 Wh": (
        lambda: mutate(first_reading("import_wh", 2**60), sign=False),
        "out_of_range",
    ),
    "bool Wh": (lambda: mutate(first_reading("import_wh", True)), "malformed"),
    "string Wh": (lambda: mutate(first_reading("import_wh", "12")), "malformed"),
    "bad quality": (lambda: mutate(first_reading("quality", "guessed")), "bad_quality"),
    "quality not a string": (lambda: mutate(first_reading("quality", 0)), "bad_quality"),
    "time with offset": (
        lambda: mutate(first_reading("interval_start", "2026-07-01T05:00:00+00:00")),
        "malformed",
    ),
    "time not a date": (
        lambda: mutate(first_reading("interval_end", "2026-13-01T05:00:00Z")),
        "malformed",
    ),
    "missing reading key": (lambda: mutate(lambda p: p["readings"][1].pop("quality")), "malformed"),
    "extra reading key": (
        lambda: mutate(lambda p: p["readings"][1].update(note="x")),
        "malformed",
    ),
    "extra message key": (lambda: mutate(lambda p: p.update(extra=1)), "malformed"),
    "missing message key": (lambda: mutate(lambda p: p.pop("participant_id")), "malformed"),
    "no readings": (lambda: mutate(lambda p: p.update(readings=[])), "malformed"),
    "meter id not a string": (lambda: mutate(lambda p: p.update(meter_id=7)), "malformed"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_rejection_names_its_reason_and_stores_nothing(case: str) -> None:
    build, code = CASES[case]
    store = filled_store()
    before = snapshot(store)
    good = day_message(METERS[1], first=40)  # a valid message in the same batch
    with pytest.raises(IngestError) as err:
        ingest(store, [good, build()], REG, GRID)
    codes = {r.code for r in err.value.rejections}
    assert codes == {code}, err.value.rejections
    assert all(r.message == 1 for r in err.value.rejections)
    assert code in str(err.value)
    assert isinstance(err.value, InvalidInputError)
    assert snapshot(store) == before
    ingest(store, [good], REG, GRID)  # the store still works and the good message goes in
    assert len(store) == len(METERS) * 8 + 4


def test_rejections_name_meter_message_and_interval() -> None:
    store = filled_store()
    bad = day_message(METERS[2], first=30, import_wh=[1, 2, -3, 4])
    with pytest.raises(IngestError) as err:
        ingest(store, [day_message(first=50), day_message(first=60), bad], REG, GRID)
    (r,) = err.value.rejections
    assert (r.meter_id, r.message, r.interval_start, r.code) == (
        METERS[2],
        2,
        "2026-07-01T08:00:00Z",
        "negative",
    )
    assert "-3" in r.reason


def test_duplicate_within_batch() -> None:
    store = MeterStore.for_registry(REG, GRID)
    a, b = day_message(first=0, n=4), day_message(first=3, n=4)
    with pytest.raises(IngestError) as err:
        ingest(store, [a, b], REG, GRID)
    (r,) = err.value.rejections
    assert (r.code, r.message, r.interval_start) == ("duplicate", 1, "2026-07-01T00:45:00Z")
    assert "first in message 0" in r.reason
    assert len(store) == 0 and not store.messages


def test_identical_resend_is_already_stored() -> None:
    store = filled_store()
    before = snapshot(store)
    with pytest.raises(IngestError) as err:
        ingest(store, [day_message(METERS[1], 0, 8)], REG, GRID)
    assert {r.code for r in err.value.rejections} == {"duplicate"}
    assert len(err.value.rejections) == 8
    assert all("already stored" in r.reason for r in err.value.rejections)
    assert snapshot(store) == before


def test_nan_on_the_wire_is_rejected_as_non_finite() -> None:
    text = to_json(day_message(first=20)).replace('"import_wh":100', '"import_wh":NaN', 1)
    store = filled_store()
    with pytest.raises(IngestError) as err:
        ingest(store, [from_json(text)], REG, GRID)
    assert [r.code for r in err.value.rejections] == ["non_finite"]


def test_import_and_export_in_one_interval_are_allowed() -> None:
    store = MeterStore.for_registry(REG, GRID)
    report = ingest(store, [day_message(import_wh=[5, 6, 7, 8], export_wh=[1, 2, 3, 4])], REG, GRID)
    assert (report.messages, report.readings, report.replaced_estimates) == (1, 4, 0)
    assert store.export_wh.tolist() == [1, 2, 3, 4] and store.import_wh.tolist() == [5, 6, 7, 8]


def test_signatures_are_kept_with_the_readings() -> None:
    store = filled_store()
    t = store.table()
    for m in range(len(METERS)):
        (msg,) = {int(i) for i in t.loc[t["meter_id"] == METERS[m], "message"]}
        stored = store.messages[msg]
        assert stored.message() == day_message(METERS[m], 0, 8)
        assert stored.data == canonical_bytes(day_message(METERS[m], 0, 8).payload)
    assert audit_signatures(store, REG) == []
    # a stored byte changed afterwards is detected offline
    sp = store.messages[1]
    store.messages[1] = SignedPayload(sp.meter_id, sp.data.replace(b"100", b"101", 1), sp.signature)
    assert audit_signatures(store, REG) == [1]


def test_store_grid_and_registry_must_match() -> None:
    store = MeterStore.for_registry(REG, GRID)
    with pytest.raises(InvalidInputError, match="grid"):
        ingest(store, [day_message()], REG, MarketGrid(T0, 30, 48))
    other = Registry.from_keys(KEYS, PART, NODE, max_kw=5.0)
    ingest(store, [day_message()], other, GRID)  # same meters: fine
    fewer = Registry.from_keys(simulated_keys(METERS[:2], 11), PART, NODE)
    with pytest.raises(InvalidInputError, match="registry"):
        ingest(store, [day_message(first=10)], fewer, GRID)


# --- canonical bytes, wire format, keys -------------------------------------------------

ids = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
readings = st.lists(
    st.fixed_dictionaries(
        {
            "interval_start": st.sampled_from(list(GRID.starts.strftime("%Y-%m-%dT%H:%M:%SZ"))),
            "interval_end": st.just("2026-07-01T00:15:00Z"),
            "import_wh": st.integers(0, 2**53 - 1),
            "export_wh": st.integers(0, 10**6),
            "quality": st.sampled_from(["measured", "estimated"]),
        }
    ),
    min_size=1,
    max_size=5,
)


@given(meter=ids, participant=ids, rs=readings, seed=st.randoms(use_true_random=False))
def test_canonical_bytes_are_rfc8785_and_key_order_independent(
    meter: str, participant: str, rs: list[dict[str, Any]], seed: Any
) -> None:
    payload = {"meter_id": meter, "participant_id": participant, "readings": rs}
    expected = rfc8785.dumps(payload)
    assert canonical_bytes(payload) == expected
    assert _canonical_fast(payload) == expected  # the fast path the ingest uses
    keys = list(payload)
    seed.shuffle(keys)
    shuffled_rs = []
    for r in rs:
        rk = list(r)
        seed.shuffle(rk)
        shuffled_rs.append({k: r[k] for k in rk})
    shuffled = {k: (shuffled_rs if k == "readings" else payload[k]) for k in keys}
    assert canonical_bytes(shuffled) == expected
    assert _canonical_fast(shuffled) == expected


def _b64d(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def test_wire_round_trip_and_errors() -> None:
    m = day_message()
    assert from_json(to_json(m)) == m
    assert json.loads(to_json(m))["signature"] == m.signature
    assert "=" not in m.signature and len(_b64d(m.signature)) == 64
    for text, match in (
        ("{", "not JSON"),
        ("[1, 2]", "not an object"),
        ('{"meter_id": "m"}', "signature"),
        ('{"signature": "a", "signature": "b"}', "twice"),
    ):
        with pytest.raises(InvalidInputError, match=match):
            from_json(text)


def test_simulated_keys_are_deterministic() -> None:
    a, b = simulated_keys(METERS, 11), simulated_keys(reversed(METERS), 11)
    c = simulated_keys(METERS, 12)
    for m in METERS:
        assert a[m].public_bytes == b[m].public_bytes
        assert a[m].public_bytes != c[m].public_bytes
        assert a[m].sign(b"x") == b[m].sign(b"x")  # Ed25519 signatures are deterministic
    assert len({a[m].public_bytes for m in METERS}) == len(METERS)
    with pytest.raises(InvalidInputError, match="no key"):
        a["meter:none"]


def test_registry_rejects_bad_entries() -> None:
    k = KEYS[METERS[0]].public_bytes
    with pytest.raises(InvalidInputError, match="twice"):
        Registry(
            np.array(["m", "m"], object),
            np.array(["p", "p"], object),
            np.array(["n", "n"], object),
            (k, k),
            np.array([1.0, 1.0]),
        )
    with pytest.raises(InvalidInputError, match="32 bytes"):
        Registry(
            np.array(["m"], object),
            np.array(["p"], object),
            np.array(["n"], object),
            (k[:5],),
            np.array([1.0]),
        )
    with pytest.raises(InvalidInputError, match="max_kw"):
        Registry(
            np.array(["m"], object),
            np.array(["p"], object),
            np.array(["n"], object),
            (k,),
            np.array([-1.0]),
        )


def test_market_grid_rejects_bad_input() -> None:
    with pytest.raises(InvalidInputError, match="time zone"):
        MarketGrid(pd.Timestamp("2026-07-01"), 15, 4)
    with pytest.raises(InvalidInputError, match="interval_min"):
        MarketGrid(T0, 0, 4)
    with pytest.raises(InvalidInputError, match="not the start"):
        GRID.slot("2026-07-01T00:07Z")
    assert GRID.slot("2026-07-01T01:00Z") == 4


# --- round trips ------------------------------------------------------------------------


@st.composite
def batches(draw: st.DrawFn) -> dict[str, pd.DataFrame]:
    """Random readings (unique per meter and interval), split into messages per meter."""
    out = {}
    for m in METERS:
        slots = draw(st.lists(st.integers(0, GRID.n_intervals - 1), unique=True, max_size=30))
        n = len(slots)
        out[m] = pd.DataFrame(
            {
                "slot": slots,
                "import_wh": draw(st.lists(st.integers(0, 10**9), min_size=n, max_size=n)),
                "export_wh": draw(st.lists(st.integers(0, 10**9), min_size=n, max_size=n)),
                "quality": draw(
                    st.lists(st.sampled_from(["measured", "estimated"]), min_size=n, max_size=n)
                ),
            }
        )
    return out


@given(data=batches(), split=st.integers(1, 5))
def test_sign_ingest_round_trip(data: dict[str, pd.DataFrame], split: int) -> None:
    msgs = []
    for m, df in data.items():
        for part in np.array_split(np.arange(len(df)), split):
            if not len(part):
                continue
            rows = df.iloc[part]
            s = GRID.starts[rows["slot"].to_numpy(np.int64)]
            msgs.append(
                make_message(
                    KEYS[m],
                    PART[m],
                    s,
                    s + Q,
                    rows["import_wh"],
                    rows["export_wh"],
                    rows["quality"],
                )
            )
    wire = [from_json(to_json(x)) for x in msgs]
    store = MeterStore.for_registry(REG, GRID)
    report = ingest(store, wire, REG, GRID)
    expected = pd.concat([df.assign(meter_id=m) for m, df in data.items()], ignore_index=True)
    assert report.readings == len(expected)
    got = store.table()
    exp = expected.assign(interval_start=GRID.starts[expected["slot"].to_numpy(np.int64)])
    cols = ["meter_id", "interval_start", "import_wh", "export_wh", "quality"]
    exp = exp.sort_values(["meter_id", "interval_start"])[cols].reset_index(drop=True)
    got = got.sort_values(["meter_id", "interval_start"])[cols].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, exp, check_dtype=False)
    table = meter_table(store, REG, "d", "m", "real-time")
    METER.check(table)
    assert table["import_kwh"].sum() * 1000 == pytest.approx(exp["import_wh"].sum(), abs=1e-3)


def sim_meter_table(rng: np.random.Generator, hours: int = 60) -> pd.DataFrame:
    """A METER table as the simulator writes it (kWh floats), 15-min, 3 meters."""
    starts = pd.date_range("2026-03-28T00:00Z", periods=hours * 4, freq="15min")  # DST on 29th
    n, k = len(starts), len(METERS)
    net = rng.normal(0, 0.8, size=(n, k))
    return METER.frame(
        {
            "design": "layered",
            "market_id": np.tile(np.array(["feeder:a/1"] * k, object), n),
            "stage": "real-time",
            "interval_start": np.repeat(starts, k),
            "duration_h": 0.25,
            "participant_id": np.tile(np.array([PART[m] for m in METERS], object), n),
            "resource_id": np.tile(np.array(METERS, object), n),
            "node_id": np.tile(np.array([NODE[m] for m in METERS], object), n),
            "import_kwh": np.clip(net, 0, None).ravel(),
            "export_kwh": np.clip(-net, 0, None).ravel(),
            "quality": "measured",
        }
    )


def test_simulator_bridge_round_trip() -> None:
    meter = sim_meter_table(np.random.default_rng(3))
    msgs = sign_meter_table(meter, KEYS, "Europe/Berlin")
    # local days in Berlin: Mar 28 (from 01:00), 29 (23 h), 30, and 31 (from 02:00 to 13:00)
    local_days = pd.DatetimeIndex(meter["interval_start"]).tz_convert("Europe/Berlin").date
    assert len(msgs) == len(METERS) * len(set(local_days))
    assert all(len(m.payload["readings"]) for m in msgs)
    reg = Registry.from_meter_table(meter, KEYS, max_kw=50.0)
    grid = MarketGrid(meter["interval_start"].min(), 15, meter["interval_start"].nunique())
    store = MeterStore.for_registry(reg, grid)
    ingest(store, [from_json(to_json(m)) for m in msgs], reg, grid)
    back = meter_table(store, reg, "layered", "feeder:a/1", "real-time")
    METER.check(back)
    key = ["interval_start", "resource_id"]
    a = meter.sort_values(key).reset_index(drop=True)
    b = back.sort_values(key).reset_index(drop=True)
    for col in ("interval_start", "participant_id", "node_id", "resource_id", "quality"):
        assert (a[col].astype(str) == b[col].astype(str)).all()
    for col in ("import_kwh", "export_kwh"):
        assert np.abs(a[col] - b[col]).max() <= 0.0005 + 1e-12


def test_sign_meter_table_rejects_bad_tables() -> None:
    meter = sim_meter_table(np.random.default_rng(1), hours=2)
    with pytest.raises(InvalidInputError, match="no key"):
        sign_meter_table(meter, simulated_keys(METERS[:1], 11), "Europe/Berlin")
    two = METER.concat([meter, meter.assign(design="other")])
    with pytest.raises(InvalidInputError, match="several designs"):
        sign_meter_table(two, KEYS, "Europe/Berlin")
    neg = meter.copy()
    neg.loc[3, "import_kwh"] = -1.0
    with pytest.raises(InvalidInputError, match="negative or not finite"):
        sign_meter_table(neg, KEYS, "Europe/Berlin")
    assert sign_meter_table(METER.empty(), KEYS, "Europe/Berlin") == []


def test_a_simulator_runs_meter_table_round_trips() -> None:
    import transactive.sim.runner as runner
    from transactive.sim.scenario import parse_scenario

    sc = parse_scenario(
        {
            "name": "meters",
            "feeder": "pandapower:kerber_landnetz_kabel_1",
            "start": "2016-07-12T21:00:00Z",  # 23:00 Berlin (after a warm-up day)
            "end": "2016-07-13T00:00:00Z",
            "market_interval_min": 15,
            "powerflow_interval_min": 30,
            "designs": ["total-dso"],
            "seed": 3,
            "homes_per_load": 2,
            "der": {"penetration": {"battery": 30}},
            "aggregator": {"devices": ["battery"]},
        }
    )
    meter = runner.run(sc).meter
    ids = meter["resource_id"].astype(str).unique()
    assert any(i.startswith("meter:home") for i in ids) and any(
        i.startswith("meter:agg") for i in ids
    )
    keys = simulated_keys(ids, sc.seed)
    msgs = sign_meter_table(meter, keys, sc.timezone)
    local_day = pd.DatetimeIndex(meter["interval_start"]).tz_convert(sc.timezone).date
    assert len(msgs) == len(set(zip(meter["resource_id"], local_day, strict=True)))
    assert len(set(local_day)) >= 2
    reg = Registry.from_meter_table(meter, keys)
    starts = pd.DatetimeIndex(meter["interval_start"].unique()).sort_values()
    grid = MarketGrid(starts[0], 15, len(starts))
    store = MeterStore.for_registry(reg, grid)
    ingest(store, [from_json(to_json(m)) for m in msgs], reg, grid)
    market = dict(
        zip(meter["resource_id"].astype(str), meter["market_id"].astype(str), strict=True)
    )
    back = meter_table(store, reg, "total-dso", market, str(meter["stage"].iloc[0]))
    key = ["interval_start", "resource_id"]
    a = meter.assign(resource_id=meter["resource_id"].astype(str)).sort_values(key)
    b = back.assign(resource_id=back["resource_id"].astype(str)).sort_values(key)
    for col in ("interval_start", "resource_id", "participant_id", "node_id", "market_id"):
        assert (a[col].astype(str).to_numpy() == b[col].astype(str).to_numpy()).all()
    for col in ("import_kwh", "export_kwh"):
        assert np.abs(a[col].to_numpy() - b[col].to_numpy()).max() <= 0.0005 + 1e-12


def test_lone_surrogate_in_an_id_is_malformed() -> None:
    payload = json.loads(json.dumps(day_message(first=20).payload))
    payload["participant_id"] = "home:\ud800"
    with pytest.raises(IngestError) as err:
        ingest(filled_store(), [Message(payload, "x")], REG, GRID)
    assert {r.code for r in err.value.rejections} == {"wrong_participant", "malformed"}


def test_a_payload_that_is_not_an_object_is_malformed() -> None:
    with pytest.raises(IngestError) as err:
        ingest(filled_store(), [Message([1], "x")], REG, GRID)  # type: ignore[arg-type]
    (r,) = err.value.rejections
    assert (r.meter_id, r.message, r.code) == (None, 0, "malformed")
