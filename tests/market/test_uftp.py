"""UFTP message shapes: one interop round against an independent participant library
(shapeshifter-uftp builds, serialises and parses its side with its own dataclasses and
xsdata), round trips of our own writers and readers, daylight-saving days, bad input."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import re
import uuid
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shapeshifter_uftp import transport
from shapeshifter_uftp import uftp as lib
from xsdata.formats.dataclass.parsers import XmlParser
from xsdata.formats.dataclass.parsers.config import ParserConfig
from xsdata.models.datatype import XmlDate, XmlDuration

from transactive.core.records import COMMITMENTS, FLEX_ASKS, FLEX_OFFERS, METER
from transactive.errors import InvalidInputError
from transactive.market import uftp
from transactive.settlement import flex_lines

DSO, AGR = "dso.example.com", "agr.example.com"
CP = "ea1.2018-03.com.example.dso:north-trafo-1"
ZONE = "Europe/Berlin"
DAY = dt.date(2018, 3, 25)  # clocks go forward: a 23-hour day of 92 quarter hours
IDS = {"design": "flex", "market_id": "dso:north", "stage": "day-ahead"}
WHERE = {
    "period": DAY,
    "congestion_point": CP,
    "isp_duration_min": 15,
    "time_zone": ZONE,
}

#: The library's own parser, strict: an attribute or element its schema does not know is an
#: error, as is a value its converters cannot read.
STRICT = XmlParser(
    config=ParserConfig(
        fail_on_unknown_properties=True,
        fail_on_unknown_attributes=True,
        fail_on_converter_warnings=True,
    )
)


def library_reads(xml: str, kind: type) -> Any:
    """The library's message object of ``xml`` (its transport parser), checked against its
    schema facets (see :func:`conforms`) and re-parsed strictly."""
    msg = transport.from_xml(xml)
    assert isinstance(msg, kind)
    conforms(msg)
    assert STRICT.from_string(xml, kind) == msg
    return msg


def conforms(obj: Any, path: str = "") -> None:
    """The UFTP schema facets the library's dataclasses carry (generated from the XSD):
    required attributes present, patterns matched, bounds and min_occurs respected."""
    for f in dataclasses.fields(obj):
        value, meta, where = getattr(obj, f.name), f.metadata, f"{path}{f.name}"
        if meta.get("required"):
            assert value is not None, f"{where} is required"
        if value is None:
            continue
        if isinstance(value, list):
            assert len(value) >= meta.get("min_occurs", 0), f"{where}: too few"
            for i, item in enumerate(value):
                conforms(item, f"{where}[{i}].")
        elif dataclasses.is_dataclass(value):
            conforms(value, f"{where}.")
        else:
            if "pattern" in meta:
                assert re.fullmatch(meta["pattern"], str(value)), f"{where}={value!r}"
            if "min_inclusive" in meta:
                assert Decimal(str(value)) >= meta["min_inclusive"], where
            if "max_inclusive" in meta:
                assert Decimal(str(value)) <= meta["max_inclusive"], where


def asks_table(kw: list[float], hour0: int = 7, direction: str = "up") -> pd.DataFrame:
    """A DSO's asks at one transformer: hourly from ``hour0`` UTC on :data:`DAY`."""
    n = len(kw)
    return FLEX_ASKS.frame(
        {
            **IDS,
            "interval_start": pd.date_range(f"2018-03-25T{hour0:02d}:00Z", periods=n, freq="h"),
            "duration_h": 1.0,
            "participant_id": "dso:north",
            "resource_id": "branch:trafo_1",
            "node_id": "north",
            "ask_id": "ask-trafo_1",
            "area": "north",
            "buses": "LV1.101 Bus 4;LV1.101 Bus 7",
            "direction": direction,
            "kw": kw,
            "price_ceiling": 0.30,
            "reason": "overload 112.4 %",
        }
    )


ASK_KW = [12.5, 20.0, 18.25, 9.0]


def _meter(c: pd.DataFrame, net_kwh: np.ndarray) -> pd.DataFrame:
    return METER.frame(
        {
            **{k: c[k].to_numpy() for k in METER.names[:8]},
            "import_kwh": np.maximum(net_kwh, 0.0),
            "export_kwh": np.maximum(-net_kwh, 0.0),
            "quality": "measured",
        }
    )


def test_one_round_with_the_shapeshifter_library() -> None:
    """FlexRequest (ours) → FlexOffer (the library's) → FlexOrder (ours) → FlexSettlement
    (ours), each read by the other side, on the day clocks go forward."""
    # 1. the DSO asks: four hours of relief at a transformer, 12.5 … 20 kW
    asks = asks_table(ASK_KW)
    request_id, conversation = str(uuid.uuid4()), str(uuid.uuid4())
    request_xml = uftp.flex_request_xml(
        asks,
        sender_domain=DSO,
        recipient_domain=AGR,
        message_id=request_id,
        conversation_id=conversation,
        **WHERE,
    )
    request = library_reads(request_xml, lib.FlexRequest)
    assert (request.message_id, request.conversation_id) == (request_id, conversation)
    assert (request.congestion_point, request.time_zone) == (CP, ZONE)
    assert request.period == XmlDate(2018, 3, 25)
    assert str(request.isp_duration) == "PT15M"
    # 07:00 UTC is 09:00 CEST, 8 h after local midnight (23:00 UTC): ISP 33, not 37
    assert [(i.start, i.duration) for i in request.isps] == [(33, 4), (37, 4), (41, 4), (45, 4)]
    assert [i.max_power for i in request.isps] == [-12500, -20000, -18250, -9000]
    assert [i.min_power for i in request.isps] == [i.max_power for i in request.isps]
    assert {i.disposition for i in request.isps} == {lib.AvailableRequested.REQUESTED}

    # 2. the aggregator answers with its own dataclasses: a full option (quarter-hour ISPs,
    # with a rebound of +6 kW over the two hours after) and a smaller one it may part-activate
    quarters = [(i.start + k, i.max_power) for i in request.isps for k in range(i.duration)]
    full = [lib.FlexOfferOptionISP(power=p, start=s, duration=1) for s, p in quarters]
    full.append(lib.FlexOfferOptionISP(power=6000, start=49, duration=8))
    energy_kwh = sum(-p for _, p in quarters) / 1000 * 0.25  # 59.75 kWh
    offer = lib.FlexOffer(
        sender_domain=AGR,
        recipient_domain=DSO,
        time_stamp="2018-03-24T10:00:00Z",
        message_id=str(uuid.uuid4()),
        conversation_id=conversation,
        isp_duration=XmlDuration("PT15M"),
        time_zone=ZONE,
        period=XmlDate(2018, 3, 25),
        congestion_point=request.congestion_point,
        expiration_date_time="2018-03-24T18:00:00Z",
        flex_request_message_id=request.message_id,
        currency="EUR",
        offer_options=[
            lib.FlexOfferOption(option_reference="full", price=0.18 * energy_kwh, isps=full),
            lib.FlexOfferOption(
                option_reference="half",
                price=Decimal("4.80"),
                min_activation_factor=Decimal("0.50"),
                isps=[lib.FlexOfferOptionISP(power=-10000, start=37, duration=8)],
            ),
        ],
    )
    offer_xml = transport.to_xml(offer)
    offers = uftp.read_flex_offer(
        offer_xml, **IDS, area="north", bus="LV1.101 Bus 4", currency="EUR", direction="up"
    )
    FLEX_OFFERS.check(offers)
    f = offers[offers["offer_id"] == "full"]
    act = f[~f["rebound"]]
    assert len(act) == 16 and f["rebound"].sum() == 1
    assert act["kw"].to_numpy() == pytest.approx(np.repeat(ASK_KW, 4))
    assert (act["direction"] == "up").all() and (act["duration_h"] == 0.25).all()
    expect = pd.date_range("2018-03-25T07:00Z", periods=16, freq="15min")
    assert (pd.DatetimeIndex(act["interval_start"]) == expect).all()
    rb = f[f["rebound"]].iloc[0]
    assert (rb["direction"], rb["kw"], rb["duration_h"]) == ("down", 6.0, 2.0)
    assert rb["interval_start"] == pd.Timestamp("2018-03-25T11:00Z")
    assert act["price"].to_numpy() == pytest.approx(0.18)  # €/kWh from the option's 10.755 €
    assert (act["availability_price"] == 0).all() and (offers["ask_id"] == request_id).all()
    assert f["all_or_none"].all() and not offers[offers["offer_id"] == "half"]["all_or_none"].any()
    h = offers[offers["offer_id"] == "half"].iloc[0]
    assert (h["kw"], h["duration_h"], h["price"]) == (10.0, 2.0, pytest.approx(4.80 / 20))
    assert set(offers["participant_id"]) == {AGR} and set(offers["resource_id"]) == {CP}

    # 3. the DSO commits the full option (its paid rows) and orders it
    commit = COMMITMENTS.frame(
        {
            **{k: act[k].to_numpy() for k in COMMITMENTS.names[:8]},
            "direction": act["direction"].to_numpy(),
            "committed_kw": act["kw"].to_numpy(),
            "price": act["price"].to_numpy(),
            "availability_price": 0.0,
            "buyer": DSO,
        }
    )
    order_xml = uftp.flex_order_xml(
        commit,
        sender_domain=DSO,
        recipient_domain=AGR,
        currency="EUR",
        flex_offer_message_id=offer.message_id,
        option_reference="full",
        order_reference="order-2018-03-25-1",
        conversation_id=conversation,
        **WHERE,
    )
    order = library_reads(order_xml, lib.FlexOrder)
    assert order.flex_offer_message_id == offer.message_id and order.option_reference == "full"
    assert order.order_reference == "order-2018-03-25-1" and order.currency == "EUR"
    assert order.price == offer.offer_options[0].price  # 10.7550: what the option asked
    assert order.activation_factor == Decimal("1.00")
    assert [(i.start, i.power) for i in order.isps] == quarters

    # 4. delivery against a 40 kW baseline: full for three hours, 70 % in the last
    c = commit.reset_index(drop=True)
    delivered = c["committed_kw"].to_numpy() * np.where(np.arange(16) < 12, 1.0, 0.7)
    baseline_kwh = np.full(16, 40.0 * 0.25)
    meter = _meter(c, baseline_kwh - delivered * 0.25)
    lines = flex_lines(c, meter, baseline_kwh, 10.0, 1.5)
    settle_xml = uftp.flex_settlement_xml(
        lines,
        c,
        meter,
        baseline_kwh,
        sender_domain=DSO,
        recipient_domain=AGR,
        period=DAY,
        congestion_point=CP,
        isp_duration_min=15,
        time_zone=ZONE,
        order_reference=order.order_reference,
        conversation_id=conversation,
    )
    s = library_reads(settle_xml, lib.FlexSettlement)
    assert (s.period_start, s.period_end, s.currency) == (request.period, request.period, "EUR")
    (os_,) = s.flex_order_settlements
    paid = lines[lines["charge"] != "flex_penalty"]["amount"].sum()
    penalty = lines[lines["charge"] == "flex_penalty"]["amount"].sum()
    assert penalty > 0
    assert os_.price == Decimal(int(paid)) / 100 and os_.penalty == Decimal(int(penalty)) / 100
    assert os_.net_settlement == os_.price - os_.penalty
    # 12 quarters × full + 4 × 70 % at 0.18 €/kWh; shortfall 30 % − 10 % tolerance × 1.5
    util = 0.18 * 0.25 * (sum(np.repeat(ASK_KW[:3], 4)) + 0.7 * 4 * ASK_KW[3])
    assert float(os_.price) == pytest.approx(util, abs=0.03)
    assert float(os_.penalty) == pytest.approx(1.5 * 0.18 * 0.25 * 4 * 0.2 * ASK_KW[3], abs=0.03)
    got = {i.start: i for i in os_.isps}
    for k, (start, power) in enumerate(quarters):
        isp = got[start]
        assert isp.baseline_power == 40000 and isp.ordered_flex_power == power
        assert isp.delivered_flex_power == -round(delivered[k] * 1000)
        assert isp.actual_power == isp.baseline_power + isp.delivered_flex_power
        assert isp.power_deficiency == round(-power - delivered[k] * 1000)
    assert os_.congestion_point == CP and os_.order_reference == order.order_reference
    # our own reader agrees with the library
    table, amounts = uftp.read_flex_settlement(settle_xml, time_zone=ZONE, isp_duration_min=15)
    assert amounts["NetSettlement"] == os_.net_settlement and amounts["Currency"] == "EUR"
    assert table["delivered_kw"].to_numpy() == pytest.approx(-delivered)
    assert (pd.DatetimeIndex(table["interval_start"]) == expect).all()


def test_our_offers_and_asks_in_the_other_direction_read_by_the_library() -> None:
    """A down ask (too much PV: raise import) and our own FlexOffer writer, unsolicited."""
    asks = asks_table([30.0, 45.5], hour0=10, direction="down")
    req = library_reads(
        uftp.flex_request_xml(asks, sender_domain=DSO, recipient_domain=AGR, **WHERE),
        lib.FlexRequest,
    )
    assert [(i.min_power, i.max_power) for i in req.isps] == [(30000, 30000), (45500, 45500)]
    offers = FLEX_OFFERS.frame(
        {
            **IDS,
            "interval_start": pd.date_range("2018-03-25T10:00Z", periods=3, freq="h"),
            "duration_h": 1.0,
            "participant_id": AGR,
            "resource_id": "portfolio:agr",
            "node_id": "LV1.101 Bus 7",
            "offer_id": "ev-charging-1",
            "ask_id": "ask-pv",
            "bus": "LV1.101 Bus 7",
            "area": "north",
            "direction": ["down", "down", "up"],
            "kw": [22.0, 22.0, 11.0],
            "rebound": [False, False, True],
            "availability_price": 0.01,
            "price": 0.05,
            "all_or_none": True,
        }
    )
    xml = uftp.flex_offer_xml(
        offers, sender_domain=AGR, recipient_domain=DSO, currency="EUR",
        flex_request_message_id=None, **WHERE,
    )  # fmt: skip
    o = library_reads(xml, lib.FlexOffer)
    assert o.unsolicited is True and o.flex_request_message_id is None
    (opt,) = o.offer_options
    assert opt.option_reference == "ev-charging-1" and opt.min_activation_factor == Decimal("1.00")
    assert opt.price == Decimal("2.6400")  # 2 × 22 kW × (1 h × 0.05 + 0.01): the rebound unpaid
    assert [(i.start, i.duration, i.power) for i in opt.isps] == [
        (45, 4, 22000),
        (49, 4, 22000),
        (53, 4, -11000),
    ]


def test_daylight_saving_days_have_92_and_100_quarter_hours() -> None:
    assert uftp.isp_day(DAY, ZONE, 15) == (pd.Timestamp("2018-03-24T23:00Z"), 92)
    assert uftp.isp_day(dt.date(2018, 10, 28), ZONE, 15) == (pd.Timestamp("2018-10-27T22:00Z"), 100)
    assert uftp.isp_day(dt.date(2018, 6, 1), ZONE, 60) == (pd.Timestamp("2018-05-31T22:00Z"), 24)
    # the repeated hour on 28 October: 01:00 UTC is the second 02:00 (CET), ISP 13 = 3 h in
    asks = asks_table([5.0])
    asks["interval_start"] = pd.to_datetime(["2018-10-28T01:00Z"], utc=True)
    xml = uftp.flex_request_xml(
        asks, sender_domain=DSO, recipient_domain=AGR, period=dt.date(2018, 10, 28),
        congestion_point=CP, isp_duration_min=15, time_zone=ZONE,
    )  # fmt: skip
    (isp,) = library_reads(xml, lib.FlexRequest).isps
    assert (isp.start, isp.duration) == (13, 4)
    # the 25-hour day's last hour (23:00 CET) is ISPs 97 … 100; an hour later is the next day
    back = uftp.read_flex_request(xml, **IDS, area="north", buses="b")
    asks["interval_start"] = pd.to_datetime(["2018-10-28T22:00Z"], utc=True)
    last = uftp.flex_request_xml(
        asks, sender_domain=DSO, recipient_domain=AGR, period=dt.date(2018, 10, 28),
        congestion_point=CP, isp_duration_min=15, time_zone=ZONE,
    )  # fmt: skip
    assert [(i.start, i.duration) for i in library_reads(last, lib.FlexRequest).isps] == [(97, 4)]
    asks["interval_start"] = pd.to_datetime(["2018-10-28T23:00Z"], utc=True)
    with pytest.raises(InvalidInputError, match="not whole 15-min ISPs of the day"):
        uftp.flex_request_xml(
            asks, sender_domain=DSO, recipient_domain=AGR, period=dt.date(2018, 10, 28),
            congestion_point=CP, isp_duration_min=15, time_zone=ZONE,
        )  # fmt: skip
    assert back["interval_start"].iloc[0] == pd.Timestamp("2018-10-28T01:00Z")


# --------------------------------------------------------------------------- round trips

DAYS = [DAY, dt.date(2018, 10, 28), dt.date(2018, 7, 2)]


@st.composite
def segments(draw: st.DrawFn) -> tuple[dt.date, list[tuple[int, int]]]:
    """A day and disjoint (start ISP, number of ISPs) segments of it (quarter hours)."""
    day = draw(st.sampled_from(DAYS))
    n = uftp.isp_day(day, ZONE, 15)[1]
    cuts = sorted(draw(st.sets(st.integers(1, n + 1), min_size=2, max_size=8)))
    pairs = list(itertools.pairwise(cuts))
    keep = draw(st.lists(st.booleans(), min_size=len(pairs), max_size=len(pairs)))
    chosen = [(a, b) for (a, b), k in zip(pairs, keep, strict=True) if k] or pairs[:1]
    return day, [(a, b - a) for a, b in chosen]


def _times(day: dt.date, segs: list[tuple[int, int]]) -> dict[str, Any]:
    day0, _ = uftp.isp_day(day, ZONE, 15)
    return {
        "interval_start": [day0 + pd.Timedelta(minutes=15 * (s - 1)) for s, _ in segs],
        "duration_h": [0.25 * c for _, c in segs],
    }


watts = st.integers(0, 500_000).map(lambda w: w / 1000)
where_of = {"congestion_point": CP, "isp_duration_min": 15, "time_zone": ZONE}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), seg=segments())
def test_asks_round_trip(data: st.DataObject, seg: tuple[dt.date, list[tuple[int, int]]]) -> None:
    day, segs = seg
    n = len(segs)
    asks = FLEX_ASKS.frame(
        {
            **IDS,
            **_times(day, segs),
            "participant_id": DSO,
            "resource_id": CP,
            "node_id": "north",
            "ask_id": "m",
            "area": "north",
            "buses": "b1;b2",
            "direction": data.draw(
                st.lists(st.sampled_from(["up", "down"]), min_size=n, max_size=n)
            ),
            "kw": data.draw(st.lists(watts.filter(bool), min_size=n, max_size=n)),
            "price_ceiling": np.nan,
            "reason": "",
        }
    )
    mid = str(uuid.uuid4())
    xml = uftp.flex_request_xml(
        asks, sender_domain=DSO, recipient_domain=AGR, period=day, message_id=mid, **where_of
    )
    library_reads(xml, lib.FlexRequest)
    back = uftp.read_flex_request(xml, **IDS, area="north", buses="b1;b2")
    want = asks.assign(ask_id=pd.Categorical([mid] * n)).sort_values(
        "interval_start", ignore_index=True
    )
    pd.testing.assert_frame_equal(back, want, check_categorical=False)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), seg=segments())
def test_offers_round_trip(data: st.DataObject, seg: tuple[dt.date, list[tuple[int, int]]]) -> None:
    day, segs = seg
    n = len(segs)
    direction = data.draw(st.sampled_from(["up", "down"]))
    rebound = [False, *data.draw(st.lists(st.booleans(), min_size=n - 1, max_size=n - 1))]
    other = {"up": "down", "down": "up"}[direction]
    offers = FLEX_OFFERS.frame(
        {
            **IDS,
            **_times(day, segs),
            "participant_id": AGR,
            "resource_id": CP,
            "node_id": "bus 3",
            "offer_id": data.draw(st.sampled_from(["o-1", "heat pumps ⌁ 7"])),
            "ask_id": "",
            "bus": "bus 3",
            "area": "north",
            "direction": [other if r else direction for r in rebound],
            "kw": data.draw(st.lists(watts.filter(bool), min_size=n, max_size=n)),
            "rebound": rebound,
            "availability_price": 0.0,
            "price": data.draw(st.floats(0.0, 2.0)),
            "all_or_none": data.draw(st.booleans()),
        }
    )
    xml = uftp.flex_offer_xml(
        offers, sender_domain=AGR, recipient_domain=DSO, period=day, currency="EUR",
        flex_request_message_id=None, **where_of,
    )  # fmt: skip
    library_reads(xml, lib.FlexOffer)
    back = uftp.read_flex_offer(
        xml, **IDS, area="north", bus="bus 3", currency="EUR", direction=direction
    )
    want = offers.sort_values("interval_start", ignore_index=True)
    paid = want[~want["rebound"]]
    energy = float((paid["kw"] * paid["duration_h"]).sum())
    assert back["price"].to_numpy() == pytest.approx(want["price"].to_numpy(), abs=6e-5 / energy)
    pd.testing.assert_frame_equal(
        back.drop(columns="price"), want.drop(columns="price"), check_categorical=False
    )


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), seg=segments())
def test_orders_round_trip(data: st.DataObject, seg: tuple[dt.date, list[tuple[int, int]]]) -> None:
    day, segs = seg
    n = len(segs)
    kw = data.draw(st.lists(watts, min_size=n, max_size=n))
    commitments = COMMITMENTS.frame(
        {
            **IDS,
            **_times(day, segs),
            "participant_id": AGR,
            "resource_id": CP,
            "node_id": "bus 3",
            "direction": data.draw(st.sampled_from(["up", "down"])) if any(kw) else "down",
            "committed_kw": kw,
            "price": data.draw(st.floats(0.0, 2.0)) if any(kw) else 0.0,
            "availability_price": 0.0,
            "buyer": DSO,
        }
    )
    xml = uftp.flex_order_xml(
        commitments, sender_domain=DSO, recipient_domain=AGR, period=day, currency="EUR",
        flex_offer_message_id=str(uuid.uuid4()), option_reference="A", order_reference="7",
        **where_of,
    )  # fmt: skip
    library_reads(xml, lib.FlexOrder)
    back = uftp.read_flex_order(xml, **IDS, bus="bus 3", currency="EUR")
    want = commitments.sort_values("interval_start", ignore_index=True)
    energy = float((want["committed_kw"] * want["duration_h"]).sum()) or 1.0
    assert back["price"].to_numpy() == pytest.approx(want["price"].to_numpy(), abs=6e-5 / energy)
    pd.testing.assert_frame_equal(
        back.drop(columns="price"), want.drop(columns="price"), check_categorical=False
    )


# --------------------------------------------------------------------------- bad input


def _request(**kw: Any) -> str:
    return uftp.flex_request_xml(
        asks_table(ASK_KW), sender_domain=DSO, recipient_domain=AGR, **{**WHERE, **kw}
    )


def test_bad_xml_names_the_element_and_attribute() -> None:
    read = {**IDS, "area": "north", "buses": "b"}
    good = _request()
    with pytest.raises(
        InvalidInputError, match=r"not well-formed XML at line 4, column 88: not well-formed"
    ):
        uftp.read_flex_request(good.replace('Start="37"', 'Start="37'), **read)
    with pytest.raises(InvalidInputError, match=r"<ISP> has no MaxPower attribute"):
        uftp.read_flex_request(re.sub(r' MaxPower="-20000"', "", good), **read)
    with pytest.raises(InvalidInputError, match=r"<FlexRequest> has no Period attribute"):
        uftp.read_flex_request(re.sub(r' Period="[^"]+"', "", good), **read)
    with pytest.raises(InvalidInputError, match=r"<ISP> Start='x' is not an integer"):
        uftp.read_flex_request(good.replace('Start="37"', 'Start="x"'), **read)
    with pytest.raises(InvalidInputError, match=r"expected a <FlexOffer> message, got <Flex"):
        uftp.read_flex_offer(good, **IDS, area="a", bus="b", currency="EUR")
    with pytest.raises(
        InvalidInputError, match=r"<ISP> #4 Start=45 Duration=60 is outside the day.s 92 ISPs"
    ):
        uftp.read_flex_request(
            good.replace('Start="45" Duration="4"', 'Start="45" Duration="60"'), **read
        )
    with pytest.raises(InvalidInputError, match=r"address an ISP twice"):
        uftp.read_flex_request(good.replace('Start="37"', 'Start="34"'), **read)
    with pytest.raises(InvalidInputError, match=r"asks for no direction"):
        uftp.read_flex_request(good.replace('MaxPower="-20000"', 'MaxPower="5000"'), **read)
    with pytest.raises(InvalidInputError, match=r"ISP-Duration 'P1D' is not PT<minutes>M"):
        uftp.read_flex_request(good.replace("PT15M", "P1D"), **read)


def test_bad_tables_and_settings_are_refused_before_anything_is_written() -> None:
    with pytest.raises(InvalidInputError, match=r"ask ask-trafo_1: interval .* is not whole"):
        a = asks_table(ASK_KW)
        a["interval_start"] = a["interval_start"] + pd.Timedelta(minutes=10)
        uftp.flex_request_xml(a, sender_domain=DSO, recipient_domain=AGR, **WHERE)
    two = FLEX_ASKS.concat([asks_table([5.0]), asks_table([3.0]).assign(ask_id="ask-bus_9")])
    with pytest.raises(InvalidInputError, match=r"ask ask-trafo_1 and ask ask-bus_9 both cover"):
        uftp.flex_request_xml(two, sender_domain=DSO, recipient_domain=AGR, **WHERE)
    with pytest.raises(InvalidInputError, match=r"kw -1.0 is not finite and ≥ 0"):
        uftp.flex_request_xml(asks_table([-1.0]), sender_domain=DSO, recipient_domain=AGR, **WHERE)
    with pytest.raises(InvalidInputError, match=r"CongestionPoint 'trafo 1' does not match"):
        _request(congestion_point="trafo 1")
    with pytest.raises(InvalidInputError, match=r"SenderDomain 'DSO' does not match"):
        uftp.flex_request_xml(asks_table([1.0]), sender_domain="DSO", recipient_domain=AGR, **WHERE)
    with pytest.raises(InvalidInputError, match=r"TimeZone 'Asia/Tokyo' is not an IANA zone"):
        _request(time_zone="Asia/Tokyo")
    with pytest.raises(InvalidInputError, match=r"ISP duration 7 min does not divide 1 h"):
        _request(isp_duration_min=7)
    with pytest.raises(InvalidInputError, match=r"FlexOffer: prices in EUR, the market settles"):
        offer = uftp.flex_offer_xml(
            FLEX_OFFERS.frame({**IDS, "interval_start": pd.Timestamp("2018-03-25T07:00Z"),
                               "duration_h": 1.0, "participant_id": AGR, "resource_id": CP,
                               "node_id": "b", "offer_id": "o", "ask_id": "", "bus": "b",
                               "area": "north", "direction": "up", "kw": 3.0, "rebound": False,
                               "availability_price": 0.0, "price": 0.2, "all_or_none": False}),
            sender_domain=AGR, recipient_domain=DSO, currency="EUR",
            flex_request_message_id=None, **WHERE,
        )  # fmt: skip
        uftp.read_flex_offer(offer, **IDS, area="north", bus="b", currency="USD")
    mixed = FLEX_OFFERS.frame(
        {**IDS, "interval_start": pd.date_range("2018-03-25T07:00Z", periods=2, freq="h"),
         "duration_h": 1.0, "participant_id": AGR, "resource_id": CP, "node_id": "b",
         "offer_id": "o", "ask_id": "", "bus": "b", "area": "north", "direction": ["up", "down"],
         "kw": 3.0, "rebound": False, "availability_price": 0.0, "price": 0.2,
         "all_or_none": False}
    )  # fmt: skip
    with pytest.raises(InvalidInputError, match=r"offer o mixes directions"):
        uftp.flex_offer_xml(
            mixed, sender_domain=AGR, recipient_domain=DSO, currency="EUR",
            flex_request_message_id=None, **WHERE,
        )  # fmt: skip
    both = offer.replace("</OfferOption>", '<ISP Power="2000" Start="40" /></OfferOption>')
    with pytest.raises(InvalidInputError, match=r"ISPs of both signs; name the offer's direction"):
        uftp.read_flex_offer(both, **IDS, area="north", bus="b", currency="EUR")
    rows = uftp.read_flex_offer(both, **IDS, area="north", bus="b", currency="EUR", direction="up")
    assert rows["rebound"].tolist() == [False, True]


def test_message_header_reads_the_common_metadata() -> None:
    mid = str(uuid.uuid4())
    head = uftp.message_header(_request(message_id=mid))
    assert head["Message"] == "FlexRequest" and head["MessageID"] == mid
    assert head["Version"] == uftp.VERSION and head["SenderDomain"] == DSO
    with pytest.raises(InvalidInputError, match=r"<FlexRequest> has no MessageID attribute"):
        uftp.message_header(re.sub(r' MessageID="[^"]+"', "", _request()))


def test_a_library_request_with_available_isps_reads_as_asks() -> None:
    """The library as the DSO: Requested ISPs are asks, Available ones (headroom) are not."""
    req = lib.FlexRequest(
        sender_domain=DSO,
        recipient_domain=AGR,
        time_stamp="2018-03-24T09:00:00+01:00",
        message_id=str(uuid.uuid4()),
        conversation_id=str(uuid.uuid4()),
        isp_duration=XmlDuration("PT15M"),
        time_zone=ZONE,
        period=XmlDate(2018, 3, 25),
        congestion_point=CP,
        revision=2,
        expiration_date_time="2018-03-24T18:00:00+01:00",
        isps=[
            lib.FlexRequestISP(
                disposition=lib.AvailableRequested.AVAILABLE, min_power=-8000, max_power=5000,
                start=1, duration=32,
            ),
            lib.FlexRequestISP(
                disposition=lib.AvailableRequested.REQUESTED, min_power=-30000, max_power=-15000,
                start=33, duration=8,
            ),
            lib.FlexRequestISP(
                disposition=lib.AvailableRequested.REQUESTED, min_power=4000, max_power=9000,
                start=92,
            ),
        ],
    )  # fmt: skip
    asks = uftp.read_flex_request(transport.to_xml(req), **IDS, area="north", buses="b1")
    FLEX_ASKS.check(asks)
    assert asks["direction"].tolist() == ["up", "down"]
    assert asks["kw"].tolist() == [15.0, 4.0]  # the deviation that must at least be reached
    assert asks["duration_h"].tolist() == [2.0, 0.25]
    assert asks["interval_start"].tolist() == [
        pd.Timestamp("2018-03-25T07:00Z"),
        pd.Timestamp("2018-03-25T21:45Z"),  # the last of the day's 92 quarter hours
    ]
    assert (asks["ask_id"] == req.message_id).all() and asks["price_ceiling"].isna().all()


def _settled() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, np.ndarray]:
    c = COMMITMENTS.frame(
        {
            **IDS,
            "interval_start": pd.date_range("2018-03-25T16:00Z", periods=2, freq="h"),
            "duration_h": 1.0,
            "participant_id": AGR,
            "resource_id": CP,
            "node_id": "b",
            "direction": "up",
            "committed_kw": [10.0, 6.0],
            "price": 0.25,
            "availability_price": 0.02,
            "buyer": DSO,
        }
    )
    base = np.array([30.0, 28.0])
    meter = _meter(c, base - np.array([10.0, 2.0]))
    return flex_lines(c, meter, base, 10.0, 2.0), c, meter, base


def _settlement(lines: pd.DataFrame, c: pd.DataFrame, meter: pd.DataFrame, base: Any) -> str:
    return uftp.flex_settlement_xml(
        lines, c, meter, base, sender_domain=DSO, recipient_domain=AGR, order_reference="o-9",
        **WHERE,
    )  # fmt: skip


def test_settlement_amounts_balance_and_bad_settlement_input() -> None:
    lines, c, meter, base = _settled()
    xml = _settlement(lines, c, meter, base)
    (s,) = library_reads(xml, lib.FlexSettlement).flex_order_settlements
    # availability 16 kW × 0.02 + utilisation (10 + 2) kWh × 0.25; penalty (5.4 − 2) × 0.5
    assert (s.price, s.penalty, s.net_settlement) == (
        Decimal("3.3200"),
        Decimal("1.7000"),
        Decimal("1.6200"),
    )
    assert [i.power_deficiency for i in s.isps] == [0, 4000]
    (contract,) = library_reads(xml, lib.FlexSettlement).contract_settlements
    assert [i.reserved_power for i in contract.periods[0].isps] == [-10000, -6000]
    with pytest.raises(InvalidInputError, match=r"NetSettlement 9.0000 ≠ Price 3.3200"):
        uftp.read_flex_settlement(
            xml.replace('NetSettlement="1.6200"', 'NetSettlement="9.0000"'),
            time_zone=ZONE,
            isp_duration_min=15,
        )
    with pytest.raises(InvalidInputError, match=r"no meter reading for commitment flex\|"):
        _settlement(lines, c, meter.iloc[:1], base)
    with pytest.raises(InvalidInputError, match=r"baselines of shape \(1,\) for 2 commitments"):
        _settlement(lines, c, meter, base[:1])
    swapped = lines.assign(counterparty_id=lines["participant_id"])
    with pytest.raises(InvalidInputError, match=r"not between the buyer and the provider"):
        _settlement(swapped, c, meter, base)
    with pytest.raises(InvalidInputError, match=r"no flex_\* settlement lines"):
        _settlement(lines.iloc[:0], c, meter, base)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    direction=st.sampled_from(["up", "down"]),
    n=st.integers(1, 4),
    tolerance=st.floats(0.0, 30.0),
    factor=st.floats(0.0, 3.0),
)
def test_settlement_carries_the_lines_money_and_the_metered_delivery(
    data: st.DataObject, direction: str, n: int, tolerance: float, factor: float
) -> None:
    """Whatever is delivered, the message's money is the lines' to the cent and its delivered
    power is metered − baseline, in the library's reading and ours."""
    kw = np.array(data.draw(st.lists(watts, min_size=n, max_size=n)))
    c = COMMITMENTS.frame(
        {
            **IDS,
            "interval_start": pd.date_range("2018-03-25T05:00Z", periods=n, freq="h"),
            "duration_h": 1.0,
            "participant_id": AGR,
            "resource_id": CP,
            "node_id": "b",
            "direction": direction,
            "committed_kw": kw,
            "price": data.draw(st.floats(0.0, 1.0)),
            "availability_price": data.draw(st.floats(0.0, 0.1)),
            "buyer": DSO,
        }
    )
    base = np.array(data.draw(st.lists(watts, min_size=n, max_size=n)))
    share = np.array(data.draw(st.lists(st.floats(-0.2, 1.3), min_size=n, max_size=n)))
    net = base - kw * share if direction == "up" else base + kw * share
    meter = _meter(c, net)
    lines = flex_lines(c, meter, base, tolerance, factor)
    xml = _settlement(lines, c, meter, base)
    (s,) = library_reads(xml, lib.FlexSettlement).flex_order_settlements
    paid = int(lines[lines["charge"] != "flex_penalty"]["amount"].sum())
    penalty = int(lines[lines["charge"] == "flex_penalty"]["amount"].sum())
    assert s.net_settlement * 100 == paid - penalty and s.penalty * 100 == penalty
    table, amounts = uftp.read_flex_settlement(xml, time_zone=ZONE, isp_duration_min=15)
    assert amounts["NetSettlement"] == s.net_settlement
    metered = meter["import_kwh"].to_numpy() - meter["export_kwh"].to_numpy()
    assert table["actual_kw"].to_numpy() == pytest.approx(metered, abs=5.01e-4)
    assert table["delivered_kw"].to_numpy() == pytest.approx(metered - base, abs=1.01e-3)
    sign = -1 if direction == "up" else 1
    assert table["ordered_kw"].to_numpy() == pytest.approx(sign * kw)
    assert (table["deficiency_kw"] >= 0).all()
    delivered_w = np.array([i.delivered_flex_power for i in s.isps])
    short_w = np.maximum(np.rint(1000 * kw) - np.maximum(sign * delivered_w, 0), 0)
    assert [i.power_deficiency for i in s.isps] == short_w.astype(int).tolist()
