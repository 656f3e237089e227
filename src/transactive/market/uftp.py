"""USEF / UFTP (Shapeshifter 3.x) message shapes of the flexibility market, over our records.

Pure functions between the record tables (:mod:`transactive.core.records`) and the XML of
the UFTP messages a DSO and an aggregator (AGR) exchange for one congestion point and one
day: FlexRequest (DSO → AGR, from FLEX_ASKS), FlexOffer (AGR → DSO, to FLEX_OFFERS),
FlexOrder (DSO → AGR, from COMMITMENTS) and FlexSettlement (DSO → AGR, from the flex_*
SETTLEMENT lines, the meter and the baseline). Written and read with the standard library
only (no UFTP package), so the interop test against an independent participant library is
a real cross-check. The mapping, and what is not mapped, is in docs/uftp.md.

Conventions (UFTP 3.x):

* Power is an integer in W; + = towards the prosumer (more consumption / less production),
  − = towards the grid. Flex powers are deviations from the baseline: our ``up`` (reduce net
  import) by k kW is −1000·k W, ``down`` is +1000·k W.
* A message covers one *Period*: a local day of ``TimeZone`` (IANA, with daylight saving).
  ISP *n* (1-based) starts (n − 1) · ISP-Duration after local midnight, counted in elapsed
  time, so a 23-hour day has 92 and a 25-hour day 100 quarter-hour ISPs. An ISP element
  with ``Duration`` d covers d consecutive ISPs; each of our rows is one ISP element.
* Prices are amounts of ``Currency`` for the whole option / order (pay-as-bid, scaled by
  the activation factor), not unit prices: ours are currency/kWh and currency/kW, and are
  converted at this edge (total = Σ kW · (h · price + availability_price)).

Transport security (signing and sealing with libsodium, DNS key discovery) is not done
here: these are the message shapes only.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from transactive.core.records import COMMITMENTS, FLEX_ASKS, FLEX_OFFERS, SETTLEMENT
from transactive.errors import InvalidInputError, plain
from transactive.settlement.flex import FLEX_CHARGES

#: The UFTP (Shapeshifter) version our messages declare.
VERSION = "3.1.0"

_DOMAIN = re.compile(r"([a-z0-9]+(-[a-z0-9]+)*\.)+[a-z]{2,}")
_UUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
_ENTITY = re.compile(r"(ea1\.[0-9]{4}-[0-9]{2}\..{1,244}:.{1,244}|ean\.[0-9]{12,34})")
_ZONE = re.compile(r"(Africa|America|Australia|Europe|Pacific)/[a-zA-Z0-9_/]{3,}")
_CURRENCY = re.compile(r"[A-Z]{3}")
_NS_PER_MIN = 60_000_000_000
_CENT = Decimal("0.01")
_PRICE = Decimal("0.0001")


# --------------------------------------------------------------------------- the day's ISPs


def _zone(time_zone: str) -> ZoneInfo:
    if not _ZONE.fullmatch(time_zone):
        raise InvalidInputError(f"UFTP: TimeZone {time_zone!r} is not an IANA zone UFTP allows")
    try:
        return ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise InvalidInputError(f"UFTP: unknown TimeZone {time_zone!r}") from e


def isp_day(period: dt.date, time_zone: str, isp_duration_min: int) -> tuple[pd.Timestamp, int]:
    """The UTC start of local day ``period`` in ``time_zone`` and its number of ISPs of
    ``isp_duration_min`` minutes (96 on a normal day of quarter hours, 92 / 100 on the days
    daylight saving starts / ends)."""
    if not (isinstance(isp_duration_min, int) and 0 < isp_duration_min <= 60):
        raise InvalidInputError(f"UFTP: ISP duration {isp_duration_min!r} min is not 1 … 60")
    if 60 % isp_duration_min:
        raise InvalidInputError(f"UFTP: ISP duration {isp_duration_min} min does not divide 1 h")
    tz = _zone(time_zone)
    start, end = (
        pd.Timestamp(dt.datetime.combine(d, dt.time(), tzinfo=tz)).tz_convert("UTC")
        for d in (period, period + dt.timedelta(days=1))
    )
    return start, int((end - start) // pd.Timedelta(minutes=isp_duration_min))


def _isps(
    table: pd.DataFrame,
    day0: pd.Timestamp,
    n_isps: int,
    isp_min: int,
    what: Callable[[int], str],
    where: str,
) -> tuple[np.ndarray, np.ndarray]:
    """(Start, Duration) of every row's interval as ISPs of the day; raises naming the first
    row whose interval is not whole ISPs inside the day."""
    step = isp_min * _NS_PER_MIN
    off = np.asarray(pd.DatetimeIndex(table["interval_start"]).asi8) - day0.value
    dur = np.rint(table["duration_h"].to_numpy(dtype=float) * 60 * _NS_PER_MIN).astype(np.int64)
    bad = (
        (off < 0) | (off % step != 0) | (dur <= 0) | (dur % step != 0) | (off + dur > n_isps * step)
    )
    if bad.any():
        i = int(np.argmax(bad))
        r = table.iloc[i]
        raise InvalidInputError(
            f"UFTP {where}: {what(i)}: interval {r['interval_start']} + {r['duration_h']} h is "
            f"not whole {isp_min}-min ISPs of the day ({n_isps} ISPs from {day0})"
        )
    start, count = off // step + 1, dur // step
    order = np.argsort(start, kind="stable")
    s, c = start[order], count[order]
    clash = s[1:] < s[:-1] + c[:-1]
    if clash.any():
        j = int(np.argmax(clash))
        raise InvalidInputError(
            f"UFTP {where}: {what(int(order[j]))} and {what(int(order[j + 1]))} both cover ISP "
            f"{int(s[j + 1])}: a message addresses each ISP once"
        )
    return start, count


def _interval(day0: pd.Timestamp, start: np.ndarray, count: np.ndarray, isp_min: int) -> dict:
    """interval_start (UTC) and duration_h of ISP elements (Start, Duration)."""
    ns = day0.value + (start - 1) * isp_min * _NS_PER_MIN
    return {
        "interval_start": pd.to_datetime(ns, utc=True),
        "duration_h": count * isp_min / 60.0,
    }


# --------------------------------------------------------------------------- writing


def _utc(ts: dt.datetime | pd.Timestamp) -> str:
    t = pd.Timestamp(ts)
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    return f"{t:%Y-%m-%dT%H:%M:%S}Z"


def _check(value: str, pattern: re.Pattern[str], what: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise InvalidInputError(f"UFTP: {what} {value!r} does not match the UFTP pattern")
    return value


def _header(
    tag: str,
    *,
    sender_domain: str,
    recipient_domain: str,
    message_id: str | None,
    conversation_id: str | None,
    time_stamp: dt.datetime | None,
) -> ET.Element:
    """The root element with the metadata every UFTP payload message carries."""
    mid = message_id if message_id is not None else str(uuid.uuid4())
    cid = conversation_id if conversation_id is not None else str(uuid.uuid4())
    return ET.Element(
        tag,
        {
            "Version": VERSION,
            "SenderDomain": _check(sender_domain, _DOMAIN, "SenderDomain"),
            "RecipientDomain": _check(recipient_domain, _DOMAIN, "RecipientDomain"),
            "TimeStamp": _utc(time_stamp if time_stamp is not None else dt.datetime.now(dt.UTC)),
            "MessageID": _check(mid, _UUID, "MessageID"),
            "ConversationID": _check(cid, _UUID, "ConversationID"),
        },
    )


def _flex_header(
    tag: str,
    *,
    sender_domain: str,
    recipient_domain: str,
    period: dt.date,
    congestion_point: str,
    isp_duration_min: int,
    time_zone: str,
    message_id: str | None,
    conversation_id: str | None,
    time_stamp: dt.datetime | None,
) -> ET.Element:
    root = _header(
        tag,
        sender_domain=sender_domain,
        recipient_domain=recipient_domain,
        message_id=message_id,
        conversation_id=conversation_id,
        time_stamp=time_stamp,
    )
    root.set("ISP-Duration", f"PT{isp_duration_min}M")
    root.set("TimeZone", time_zone)
    root.set("Period", period.isoformat())
    root.set("CongestionPoint", _check(congestion_point, _ENTITY, "CongestionPoint"))
    return root


def _xml(root: ET.Element) -> str:
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode")


def _watts(kw: np.ndarray) -> np.ndarray:
    return np.rint(np.asarray(kw, dtype=float) * 1000.0).astype(np.int64)


def _signed(kw: np.ndarray, direction: pd.Series) -> np.ndarray:
    """Deviation from the baseline in W, UFTP sign: up (less import) −, down +."""
    w = _watts(kw)
    return np.where((direction == "up").to_numpy(dtype=bool), -w, w)


def _money(x: float | Decimal, quantum: Decimal = _PRICE) -> str:
    return str(Decimal(str(x)).quantize(quantum, rounding=ROUND_HALF_EVEN))


def _one(table: pd.DataFrame, column: str, where: str) -> str:
    values = pd.unique(table[column].astype(str))
    if len(values) != 1:
        raise InvalidInputError(
            f"UFTP {where}: rows of {len(values)} {column}s {list(values)}; one"
        )
    return str(values[0])


def _numbers(table: pd.DataFrame, checks: dict[str, str], where: str, name: str) -> None:
    """Raise naming the first row where a column is not finite (or not ≥ 0 where asked)."""
    for col, rule in checks.items():
        v = table[col].to_numpy(dtype=float)
        bad = ~np.isfinite(v) | ((v < 0) if rule == ">=0" else np.zeros(len(v), dtype=bool))
        if bad.any():
            i = int(np.argmax(bad))
            raise InvalidInputError(
                f"UFTP {where}: {name} {plain(table[name].iloc[i])} "
                f"({table['interval_start'].iloc[i]}): {col} {v[i]} is not "
                f"{'finite and ≥ 0' if rule == '>=0' else 'finite'}"
            )
    d = ~table["direction"].isin(["up", "down"]).to_numpy(dtype=bool)
    if d.any():
        i = int(np.argmax(d))
        raise InvalidInputError(
            f"UFTP {where}: {name} {plain(table[name].iloc[i])}: direction "
            f"{table['direction'].iloc[i]!r} is not up | down"
        )


def _one_direction(
    table: pd.DataFrame, main: np.ndarray, against: np.ndarray, what: str, where: str
) -> None:
    """Raise unless the ``main`` rows share one direction and the ``against`` rows (rebound)
    have the other: a message's ISP signs are all a reader has to tell them apart."""
    d = table["direction"].astype(str).to_numpy()
    ways = set(d[main].tolist())
    if len(ways) > 1 or (ways and set(d[against].tolist()) & ways):
        raise InvalidInputError(
            f"UFTP {where}: {what} mixes directions (paid rows one way, rebound rows the other)"
        )


def flex_request_xml(
    asks: pd.DataFrame,
    *,
    sender_domain: str,
    recipient_domain: str,
    period: dt.date,
    congestion_point: str,
    isp_duration_min: int,
    time_zone: str,
    message_id: str | None = None,
    conversation_id: str | None = None,
    time_stamp: dt.datetime | None = None,
    expiration: dt.datetime | None = None,
    revision: int = 1,
) -> str:
    """A FlexRequest (DSO → AGR) from :data:`FLEX_ASKS` rows of one area and local day: each
    row one ISP element with Disposition ``Requested`` and MinPower = MaxPower = the needed
    deviation (W; up −, down +). ``expiration``: until when offers are taken (default: the
    start of the first requested ISP). The price ceiling is not part of a FlexRequest."""
    FLEX_ASKS.check(asks)
    where = "FlexRequest"
    if asks.empty:
        raise InvalidInputError(f"UFTP {where}: no asks (a FlexRequest needs one ISP)")
    a = asks.reset_index(drop=True)
    _one(a, "area", where)
    _numbers(a, {"kw": ">=0"}, where, "ask_id")
    day0, n = isp_day(period, time_zone, isp_duration_min)
    start, count = _isps(
        a, day0, n, isp_duration_min, lambda i: f"ask {plain(a['ask_id'].iloc[i])}", where
    )
    power = _signed(a["kw"].to_numpy(dtype=float), a["direction"])
    root = _flex_header(
        "FlexRequest",
        sender_domain=sender_domain,
        recipient_domain=recipient_domain,
        period=period,
        congestion_point=congestion_point,
        isp_duration_min=isp_duration_min,
        time_zone=time_zone,
        message_id=message_id,
        conversation_id=conversation_id,
        time_stamp=time_stamp,
    )
    first = day0 + pd.Timedelta(minutes=isp_duration_min * (int(start.min()) - 1))
    root.set("Revision", str(int(revision)))
    root.set("ExpirationDateTime", _utc(expiration if expiration is not None else first))
    for i in np.argsort(start, kind="stable"):
        ET.SubElement(
            root,
            "ISP",
            {
                "Disposition": "Requested",
                "MinPower": str(power[i]),
                "MaxPower": str(power[i]),
                "Start": str(start[i]),
                "Duration": str(count[i]),
            },
        )
    return _xml(root)


def flex_offer_xml(
    offers: pd.DataFrame,
    *,
    sender_domain: str,
    recipient_domain: str,
    period: dt.date,
    congestion_point: str,
    isp_duration_min: int,
    time_zone: str,
    currency: str,
    flex_request_message_id: str | None,
    message_id: str | None = None,
    conversation_id: str | None = None,
    time_stamp: dt.datetime | None = None,
    expiration: dt.datetime | None = None,
) -> str:
    """A FlexOffer (AGR → DSO) of the :data:`FLEX_OFFERS` rows of *one* offer, as one
    OfferOption (OptionReference = offer_id; the options of one FlexOffer are mutually
    exclusive in UFTP, so independent offers go in separate messages). ISP Power = each
    row's deviation (W, its own direction's sign; rebound rows included, unpaid); Price =
    Σ over paid rows kW · (h · price + availability_price), currency; MinActivationFactor
    1.00 for all-or-none, else 0.01. ``flex_request_message_id`` None: unsolicited."""
    FLEX_OFFERS.check(offers)
    where = "FlexOffer"
    if offers.empty:
        raise InvalidInputError(f"UFTP {where}: no offer rows")
    o = offers.reset_index(drop=True)
    oid = _one(o, "offer_id", where)
    _one(o, "all_or_none", where)
    _numbers(o, {"kw": ">=0", "price": "", "availability_price": ""}, where, "offer_id")
    day0, n = isp_day(period, time_zone, isp_duration_min)
    start, count = _isps(o, day0, n, isp_duration_min, lambda i: f"offer {oid} row {i}", where)
    paid = ~o["rebound"].to_numpy(dtype=bool)
    kw, h = o["kw"].to_numpy(dtype=float), o["duration_h"].to_numpy(dtype=float)
    _one_direction(o, paid & (kw > 0), ~paid & (kw > 0), f"offer {oid}", where)
    total = float(
        np.sum(
            (
                kw
                * (
                    h * o["price"].to_numpy(dtype=float)
                    + o["availability_price"].to_numpy(dtype=float)
                )
            )[paid]
        )
    )
    root = _flex_header(
        "FlexOffer",
        sender_domain=sender_domain,
        recipient_domain=recipient_domain,
        period=period,
        congestion_point=congestion_point,
        isp_duration_min=isp_duration_min,
        time_zone=time_zone,
        message_id=message_id,
        conversation_id=conversation_id,
        time_stamp=time_stamp,
    )
    first = day0 + pd.Timedelta(minutes=isp_duration_min * (int(start.min()) - 1))
    root.set("ExpirationDateTime", _utc(expiration if expiration is not None else first))
    if flex_request_message_id is None:
        root.set("Unsolicited", "true")
    else:
        root.set(
            "FlexRequestMessageID", _check(flex_request_message_id, _UUID, "FlexRequestMessageID")
        )
    root.set("Currency", _check(currency, _CURRENCY, "Currency"))
    option = ET.SubElement(
        root,
        "OfferOption",
        {
            "OptionReference": oid,
            "Price": _money(total),
            "MinActivationFactor": "1.00" if bool(o["all_or_none"].iloc[0]) else "0.01",
        },
    )
    power = _signed(kw, o["direction"])
    for i in np.argsort(start, kind="stable"):
        ET.SubElement(
            option,
            "ISP",
            {"Power": str(power[i]), "Start": str(start[i]), "Duration": str(count[i])},
        )
    return _xml(root)


def _order_total(c: pd.DataFrame) -> float:
    """What the buyer pays for commitments if fully delivered: Σ kW · (h · price + avail)."""
    kw = c["committed_kw"].to_numpy(dtype=float)
    h = c["duration_h"].to_numpy(dtype=float)
    avail = c["availability_price"].to_numpy(dtype=float)
    return float(np.sum(kw * (h * c["price"].to_numpy(dtype=float) + avail)))


def flex_order_xml(
    commitments: pd.DataFrame,
    *,
    sender_domain: str,
    recipient_domain: str,
    period: dt.date,
    congestion_point: str,
    isp_duration_min: int,
    time_zone: str,
    currency: str,
    flex_offer_message_id: str,
    option_reference: str,
    order_reference: str,
    activation_factor: float = 1.0,
    message_id: str | None = None,
    conversation_id: str | None = None,
    time_stamp: dt.datetime | None = None,
) -> str:
    """A FlexOrder (DSO → AGR) of the :data:`COMMITMENTS` rows of one provider for the
    option ``option_reference`` of FlexOffer ``flex_offer_message_id``: ISP Power = the
    committed deviation (W; up −, down +), Price = Σ committed kW · (h · price +
    availability_price), currency; ``activation_factor`` = committed / offered (0.01 … 1;
    the ISPs are already scaled by it)."""
    COMMITMENTS.check(commitments)
    where = "FlexOrder"
    if commitments.empty:
        raise InvalidInputError(f"UFTP {where}: no commitments")
    c = commitments.reset_index(drop=True)
    _one(c, "participant_id", where)
    _numbers(
        c, {"committed_kw": ">=0", "price": "", "availability_price": ""}, where, "resource_id"
    )
    none = np.zeros(len(c), dtype=bool)
    _one_direction(c, c["committed_kw"].to_numpy(dtype=float) > 0, none, "the order", where)
    if not 0.01 <= activation_factor <= 1.0:
        raise InvalidInputError(f"UFTP {where}: activation factor {activation_factor} ∉ 0.01 … 1")
    day0, n = isp_day(period, time_zone, isp_duration_min)
    start, count = _isps(
        c, day0, n, isp_duration_min, lambda i: f"commitment {plain(c['resource_id'].iloc[i])}",
        where,
    )  # fmt: skip
    root = _flex_header(
        "FlexOrder",
        sender_domain=sender_domain,
        recipient_domain=recipient_domain,
        period=period,
        congestion_point=congestion_point,
        isp_duration_min=isp_duration_min,
        time_zone=time_zone,
        message_id=message_id,
        conversation_id=conversation_id,
        time_stamp=time_stamp,
    )
    root.set("FlexOfferMessageID", _check(flex_offer_message_id, _UUID, "FlexOfferMessageID"))
    root.set("Price", _money(_order_total(c)))
    root.set("Currency", _check(currency, _CURRENCY, "Currency"))
    root.set("OrderReference", order_reference)
    root.set("OptionReference", option_reference)
    root.set("ActivationFactor", _money(activation_factor, _CENT))
    power = _signed(c["committed_kw"].to_numpy(dtype=float), c["direction"])
    for i in np.argsort(start, kind="stable"):
        ET.SubElement(
            root, "ISP", {"Power": str(power[i]), "Start": str(start[i]), "Duration": str(count[i])}
        )
    return _xml(root)


def _keys(f: pd.DataFrame) -> pd.Series:
    """design | resource_id | interval_start (ns) of each row, as one string key."""
    ns = pd.Series(np.asarray(pd.DatetimeIndex(f["interval_start"]).asi8), index=f.index)
    return f["design"].astype(str) + "|" + f["resource_id"].astype(str) + "|" + ns.astype(str)


def flex_settlement_xml(
    lines: pd.DataFrame,
    commitments: pd.DataFrame,
    meter: pd.DataFrame,
    baseline_kwh: np.ndarray,
    *,
    sender_domain: str,
    recipient_domain: str,
    period: dt.date,
    congestion_point: str,
    isp_duration_min: int,
    time_zone: str,
    order_reference: str,
    message_id: str | None = None,
    conversation_id: str | None = None,
    time_stamp: dt.datetime | None = None,
) -> str:
    """A FlexSettlement (DSO → AGR) of one order: the :data:`COMMITMENTS` rows of one provider
    and day, the :data:`METER` readings and ``baseline_kwh`` (net kWh, one per commitment) they
    were settled against, and their flex_* :data:`SETTLEMENT` lines (``lines``; other lines
    are ignored). Per ISP, W: BaselinePower, ActualPower (metered net import), OrderedFlexPower
    (up −, down +), DeliveredFlexPower = Actual − Baseline, PowerDeficiency = committed − the
    delivered part in the committed direction (≥ 0). Price = the availability + utilisation
    amounts, Penalty = the penalty amounts, NetSettlement = Price − Penalty (currency, exact
    from the cents). The schema requires a ContractSettlement: it carries the committed
    (availability-paid) power per ISP as ReservedPower and OrderedPower."""
    COMMITMENTS.check(commitments)
    SETTLEMENT.check(lines)
    where = "FlexSettlement"
    if commitments.empty:
        raise InvalidInputError(f"UFTP {where}: no commitments")
    c = commitments.reset_index(drop=True)
    provider = _one(c, "participant_id", where)
    _numbers(c, {"committed_kw": ">=0"}, where, "resource_id")
    base = np.asarray(baseline_kwh, dtype=float)
    if base.shape != (len(c),) or not np.isfinite(base).all():
        raise InvalidInputError(
            f"UFTP {where}: baselines of shape {base.shape} for {len(c)} commitments (finite, "
            "one per commitment)"
        )
    day0, n = isp_day(period, time_zone, isp_duration_min)
    start, count = _isps(
        c, day0, n, isp_duration_min, lambda i: f"commitment {plain(c['resource_id'].iloc[i])}",
        where,
    )  # fmt: skip
    keys = _keys(c)
    at = pd.Index(_keys(meter)).get_indexer(keys)
    if (at < 0).any():
        i = int(np.argmax(at < 0))
        raise InvalidInputError(f"UFTP {where}: no meter reading for commitment {keys.iloc[i]}")
    m = meter.iloc[at]
    h = c["duration_h"].to_numpy(dtype=float)
    net_kw = (m["import_kwh"].to_numpy(dtype=float) - m["export_kwh"].to_numpy(dtype=float)) / h
    baseline_w, actual_w = _watts(base / h), _watts(net_kw)
    ordered_w = _signed(c["committed_kw"].to_numpy(dtype=float), c["direction"])
    delivered_w = actual_w - baseline_w
    in_direction = np.where(ordered_w < 0, -delivered_w, delivered_w)
    deficiency_w = np.maximum(np.abs(ordered_w) - np.maximum(in_direction, 0), 0)

    own = lines[lines["charge"].isin(FLEX_CHARGES).to_numpy(dtype=bool)]
    own = own[_keys(own).isin(keys).to_numpy(dtype=bool)]
    if own.empty:
        raise InvalidInputError(f"UFTP {where}: no flex_* settlement lines for these commitments")
    currency = _one(own, "currency", where)
    charge = own["charge"].astype(str).to_numpy()
    amount = own["amount"].to_numpy(dtype=np.int64)
    paid_by_buyer = charge != "flex_penalty"
    wrong = np.where(
        paid_by_buyer,
        own["counterparty_id"].astype(str).to_numpy() != provider,
        own["participant_id"].astype(str).to_numpy() != provider,
    )
    if wrong.any():
        raise InvalidInputError(
            f"UFTP {where}: a {charge[int(np.argmax(wrong))]} line is not between the buyer and "
            f"the provider {provider}"
        )
    price_cents, penalty_cents = int(amount[paid_by_buyer].sum()), int(amount[~paid_by_buyer].sum())
    price, penalty = Decimal(price_cents) / 100, Decimal(penalty_cents) / 100
    net = price - penalty
    if net * 100 != price_cents - penalty_cents:  # money balances to the cent on the wire
        raise AssertionError("FlexSettlement: NetSettlement ≠ Price − Penalty")

    root = _header(
        "FlexSettlement",
        sender_domain=sender_domain,
        recipient_domain=recipient_domain,
        message_id=message_id,
        conversation_id=conversation_id,
        time_stamp=time_stamp,
    )
    root.set("Result", "Accepted")
    root.set("PeriodStart", period.isoformat())
    root.set("PeriodEnd", period.isoformat())
    root.set("Currency", _check(currency, _CURRENCY, "Currency"))
    order = ET.SubElement(
        root,
        "FlexOrderSettlement",
        {
            "OrderReference": order_reference,
            "Period": period.isoformat(),
            "CongestionPoint": _check(congestion_point, _ENTITY, "CongestionPoint"),
            "Price": _money(price),
            "Penalty": _money(penalty),
            "NetSettlement": _money(net),
        },
    )
    contract = ET.SubElement(ET.SubElement(root, "ContractSettlement"), "Period")
    contract.set("Period", period.isoformat())
    for i in np.argsort(start, kind="stable"):
        isp = {"Start": str(start[i]), "Duration": str(count[i])}
        ET.SubElement(
            order,
            "ISP",
            {
                **isp,
                "BaselinePower": str(baseline_w[i]),
                "OrderedFlexPower": str(ordered_w[i]),
                "ActualPower": str(actual_w[i]),
                "DeliveredFlexPower": str(delivered_w[i]),
                "PowerDeficiency": str(deficiency_w[i]),
            },
        )
        ET.SubElement(
            contract,
            "ISP",
            {**isp, "ReservedPower": str(ordered_w[i]), "OrderedPower": str(ordered_w[i])},
        )
    return _xml(root)


# --------------------------------------------------------------------------- reading


def _parse(xml: str | bytes, tag: str) -> ET.Element:
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as e:
        line, column = e.position
        raise InvalidInputError(
            f"UFTP {tag}: not well-formed XML at line {line}, column {column + 1}: "
            f"{str(e).split(':')[0]}"
        ) from e
    if root.tag != tag:
        raise InvalidInputError(f"UFTP: expected a <{tag}> message, got <{root.tag}>")
    return root


def _attr(el: ET.Element, name: str, where: str, default: str | None = None) -> str:
    value = el.get(name, default)
    if value is None:
        raise InvalidInputError(f"UFTP {where}: <{el.tag}> has no {name} attribute")
    return value


def _int(el: ET.Element, name: str, where: str, default: str | None = None) -> int:
    value = _attr(el, name, where, default)
    try:
        return int(value)
    except ValueError as e:
        raise InvalidInputError(
            f"UFTP {where}: <{el.tag}> {name}={value!r} is not an integer"
        ) from e


def _decimal(el: ET.Element, name: str, where: str, default: str | None = None) -> Decimal:
    value = _attr(el, name, where, default)
    try:
        d = Decimal(value)
    except InvalidOperation as e:
        raise InvalidInputError(f"UFTP {where}: <{el.tag}> {name}={value!r} is not a number") from e
    if not d.is_finite():
        raise InvalidInputError(f"UFTP {where}: <{el.tag}> {name}={value!r} is not finite")
    return d


def message_header(xml: str | bytes) -> dict[str, str]:
    """The attributes of a UFTP message's root element (MessageID, ConversationID,
    SenderDomain, …) and its type under ``"Message"``; raises unless the common metadata is
    there."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as e:
        raise InvalidInputError(f"UFTP: not well-formed XML: {e}") from e
    for name in ("Version", "SenderDomain", "RecipientDomain", "MessageID", "ConversationID"):
        _attr(root, name, root.tag)
    return {"Message": root.tag, **root.attrib}


def _day_of(root: ET.Element, where: str) -> tuple[pd.Timestamp, int, int]:
    """(UTC start, number of ISPs, ISP minutes) of a flex message's Period."""
    text = _attr(root, "ISP-Duration", where)
    match = re.fullmatch(r"PT(\d+)M", text)
    if not match:
        raise InvalidInputError(f"UFTP {where}: ISP-Duration {text!r} is not PT<minutes>M")
    minutes = int(match.group(1))
    period_text = _attr(root, "Period", where)
    try:
        period = dt.date.fromisoformat(period_text)
    except ValueError as e:
        raise InvalidInputError(f"UFTP {where}: Period {period_text!r} is not a date") from e
    day0, n = isp_day(period, _attr(root, "TimeZone", where), minutes)
    return day0, n, minutes


def _isp_elements(
    parent: ET.Element, names: tuple[str, ...], n_isps: int, where: str
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Start, Duration and the integer attributes ``names`` of the <ISP> children, checked to
    lie inside the day and not to overlap."""
    isps = parent.findall("ISP")
    if not isps:
        raise InvalidInputError(f"UFTP {where}: <{parent.tag}> has no <ISP>")
    start = np.array([_int(e, "Start", where) for e in isps], dtype=np.int64)
    count = np.array([_int(e, "Duration", where, "1") for e in isps], dtype=np.int64)
    values = {k: np.array([_int(e, k, where) for e in isps], dtype=np.int64) for k in names}
    bad = (start < 1) | (count < 1) | (start + count - 1 > n_isps)
    if bad.any():
        i = int(np.argmax(bad))
        raise InvalidInputError(
            f"UFTP {where}: <ISP> #{i + 1} Start={start[i]} Duration={count[i]} is outside the "
            f"day's {n_isps} ISPs"
        )
    order = np.argsort(start, kind="stable")
    s, c = start[order], count[order]
    if (s[1:] < s[:-1] + c[:-1]).any():
        raise InvalidInputError(f"UFTP {where}: <ISP> elements address an ISP twice")
    return start, count, values


def _direction(power_w: np.ndarray) -> np.ndarray:
    return np.where(power_w < 0, "up", "down")


def _identity(
    *, design: str, market_id: str, stage: str, participant_id: str, resource_id: str,
    node_id: str,
) -> dict[str, str]:  # fmt: skip
    """The identity columns of rows read from a message (broadcast to every row)."""
    return {
        "design": design,
        "market_id": market_id,
        "stage": stage,
        "participant_id": participant_id,
        "resource_id": resource_id,
        "node_id": node_id,
    }


def read_flex_request(
    xml: str | bytes, *, design: str, market_id: str, stage: str, area: str, buses: str
) -> pd.DataFrame:
    """The :data:`FLEX_ASKS` rows of a FlexRequest: one per ISP element with Disposition
    Requested (Available ISPs are headroom, not asks). ask_id = MessageID, participant_id =
    SenderDomain, resource_id = CongestionPoint, node_id = ``area``; direction and kW from
    the requested deviation (up where MaxPower < 0: kW = −MaxPower / 1000; down where
    MinPower > 0: kW = MinPower / 1000; a range containing 0 names no direction and is
    refused); price_ceiling NaN (a FlexRequest carries no price), reason ''."""
    where = "FlexRequest"
    root = _parse(xml, where)
    day0, n, minutes = _day_of(root, where)
    requested = ET.Element("requested")
    requested.extend(e for e in root.findall("ISP") if e.get("Disposition") != "Available")
    start, count, v = _isp_elements(requested, ("MinPower", "MaxPower"), n, where)
    lo, hi = v["MinPower"], v["MaxPower"]
    up, down = hi < 0, lo > 0
    if (lo > hi).any() or not (up | down).all():
        i = int(np.argmax((lo > hi) | ~(up | down)))
        raise InvalidInputError(
            f"UFTP {where}: requested <ISP> Start={start[i]} MinPower={lo[i]} MaxPower={hi[i]} "
            "asks for no direction (up needs MaxPower < 0, down MinPower > 0)"
        )
    return FLEX_ASKS.frame(
        {
            **_identity(
                design=design,
                market_id=market_id,
                stage=stage,
                participant_id=_attr(root, "SenderDomain", where),
                resource_id=_attr(root, "CongestionPoint", where),
                node_id=area,
            ),
            **_interval(day0, start, count, minutes),
            "ask_id": _attr(root, "MessageID", where),
            "area": area,
            "buses": buses,
            "direction": np.where(up, "up", "down"),
            "kw": np.where(up, -hi, lo) / 1000.0,
            "price_ceiling": np.nan,
            "reason": "",
        }
    )


def read_flex_offer(
    xml: str | bytes,
    *,
    design: str,
    market_id: str,
    stage: str,
    area: str,
    bus: str,
    currency: str,
    direction: str | None = None,
) -> pd.DataFrame:
    """The :data:`FLEX_OFFERS` rows of a FlexOffer: one offer per OfferOption (offer_id =
    OptionReference; options of one message are mutually exclusive in UFTP, which the table
    does not record), one row per ISP element with a non-zero Power. kW = |Power| / 1000,
    direction from the sign (up −, down +); rows against the option's ``direction`` are its
    rebound (None: every row of an option must have one sign). price = Price / the option's
    activation kWh (currency/kWh), availability_price 0 (a FlexOffer has one total price);
    all_or_none = MinActivationFactor 1. participant_id = SenderDomain, resource_id =
    CongestionPoint, node_id = ``bus``, ask_id = FlexRequestMessageID ('' if unsolicited).
    Refuses prices in another currency than ``currency``."""
    where = "FlexOffer"
    if direction not in (None, "up", "down"):
        raise InvalidInputError(f"UFTP {where}: direction {direction!r} is not up | down")
    root = _parse(xml, where)
    day0, n, minutes = _day_of(root, where)
    if (cur := _attr(root, "Currency", where)) != currency:
        raise InvalidInputError(f"UFTP {where}: prices in {cur}, the market settles in {currency}")
    options = root.findall("OfferOption")
    if not options:
        raise InvalidInputError(f"UFTP {where}: <FlexOffer> has no <OfferOption>")
    refs = [_attr(o, "OptionReference", where) for o in options]
    if len(set(refs)) != len(refs):
        raise InvalidInputError(f"UFTP {where}: OptionReference repeated in {refs}")
    parts = []
    for option, ref in zip(options, refs, strict=True):
        what = f"{where} option {ref!r}"
        start, count, v = _isp_elements(option, ("Power",), n, what)
        keep = v["Power"] != 0
        start, count, power = start[keep], count[keep], v["Power"][keep]
        if not keep.any():
            raise InvalidInputError(f"UFTP {what}: every ISP has Power 0 (nothing offered)")
        sign = -1 if direction == "up" else 1 if direction == "down" else int(np.sign(power[0]))
        rebound = np.sign(power) != sign
        if direction is None and rebound.any():
            raise InvalidInputError(
                f"UFTP {what}: ISPs of both signs; name the offer's direction to read the "
                "opposite ones as its rebound"
            )
        kw = np.abs(power) / 1000.0
        h = count * minutes / 60.0
        energy = float(np.sum((kw * h)[~rebound]))
        if energy <= 0:
            raise InvalidInputError(f"UFTP {what}: no ISP in the offer's direction")
        factor = _decimal(option, "MinActivationFactor", what, "1.00")
        parts.append(
            FLEX_OFFERS.frame(
                {
                    **_identity(
                        design=design,
                        market_id=market_id,
                        stage=stage,
                        participant_id=_attr(root, "SenderDomain", where),
                        resource_id=_attr(root, "CongestionPoint", where),
                        node_id=bus,
                    ),
                    **_interval(day0, start, count, minutes),
                    "offer_id": ref,
                    "ask_id": root.get("FlexRequestMessageID", ""),
                    "bus": bus,
                    "area": area,
                    "direction": _direction(power),
                    "kw": kw,
                    "rebound": rebound,
                    "availability_price": 0.0,
                    "price": float(_decimal(option, "Price", what)) / energy,
                    "all_or_none": factor >= 1,
                }
            )
        )
    return FLEX_OFFERS.concat(parts)


def read_flex_order(
    xml: str | bytes, *, design: str, market_id: str, stage: str, bus: str, currency: str
) -> pd.DataFrame:
    """The :data:`COMMITMENTS` rows of a FlexOrder: one per ISP element. participant_id =
    RecipientDomain (the AGR), buyer = SenderDomain (the DSO), resource_id = CongestionPoint,
    node_id = ``bus``; committed_kw = |Power| / 1000, direction from the sign (rows of Power 0
    take the order's direction); price = Price / the ordered kWh (currency/kWh; 0 for an
    empty order), availability_price 0. Refuses another currency than ``currency``."""
    where = "FlexOrder"
    root = _parse(xml, where)
    day0, n, minutes = _day_of(root, where)
    if (cur := _attr(root, "Currency", where)) != currency:
        raise InvalidInputError(f"UFTP {where}: price in {cur}, the market settles in {currency}")
    for name in ("FlexOfferMessageID", "OrderReference"):
        _attr(root, name, where)
    start, count, v = _isp_elements(root, ("Power",), n, where)
    power = v["Power"]
    signs = set(np.sign(power[power != 0]).tolist())
    if len(signs) > 1:
        raise InvalidInputError(f"UFTP {where}: ISPs of both signs (one order, one direction)")
    order_direction = "up" if signs == {-1} else "down"
    kw = np.abs(power) / 1000.0
    energy = float(np.sum(kw * count * minutes / 60.0))
    total = float(_decimal(root, "Price", where))
    return COMMITMENTS.frame(
        {
            **_identity(
                design=design,
                market_id=market_id,
                stage=stage,
                participant_id=_attr(root, "RecipientDomain", where),
                resource_id=_attr(root, "CongestionPoint", where),
                node_id=bus,
            ),
            **_interval(day0, start, count, minutes),
            "direction": order_direction,
            "committed_kw": kw,
            "price": total / energy if energy > 0 else 0.0,
            "availability_price": 0.0,
            "buyer": _attr(root, "SenderDomain", where),
        }
    )


def read_flex_settlement(
    xml: str | bytes, *, time_zone: str, isp_duration_min: int
) -> tuple[pd.DataFrame, dict[str, Decimal | str]]:
    """The per-ISP quantities of a FlexSettlement's (single) FlexOrderSettlement — columns
    interval_start (UTC), duration_h, baseline_kw, ordered_kw, actual_kw, delivered_kw,
    deficiency_kw (UFTP signs; a FlexSettlement names no time zone or ISP length, so they are
    given) — and its amounts: OrderReference, Currency, Price, Penalty, NetSettlement (Decimal,
    currency). Raises when NetSettlement ≠ Price − Penalty."""
    where = "FlexSettlement"
    root = _parse(xml, where)
    orders = root.findall("FlexOrderSettlement")
    if len(orders) != 1:
        raise InvalidInputError(f"UFTP {where}: {len(orders)} <FlexOrderSettlement>; one")
    order = orders[0]
    period_text = _attr(order, "Period", where)
    try:
        period = dt.date.fromisoformat(period_text)
    except ValueError as e:
        raise InvalidInputError(f"UFTP {where}: Period {period_text!r} is not a date") from e
    price, penalty = _decimal(order, "Price", where), _decimal(order, "Penalty", where, "0")
    net = _decimal(order, "NetSettlement", where)
    if net != price - penalty:
        raise InvalidInputError(
            f"UFTP {where}: NetSettlement {net} ≠ Price {price} − Penalty {penalty}"
        )
    day0, n = isp_day(period, time_zone, isp_duration_min)
    names = ("BaselinePower", "OrderedFlexPower", "ActualPower", "DeliveredFlexPower")
    start, count, v = _isp_elements(order, names, n, where)
    deficiency = [_int(e, "PowerDeficiency", where, "0") for e in order.findall("ISP")]
    frame = pd.DataFrame(
        {
            **_interval(day0, start, count, isp_duration_min),
            "baseline_kw": v["BaselinePower"] / 1000.0,
            "ordered_kw": v["OrderedFlexPower"] / 1000.0,
            "actual_kw": v["ActualPower"] / 1000.0,
            "delivered_kw": v["DeliveredFlexPower"] / 1000.0,
            "deficiency_kw": np.asarray(deficiency, dtype=float) / 1000.0,
        }
    )
    amounts: dict[str, Decimal | str] = {
        "OrderReference": order.get("OrderReference", ""),
        "Currency": _attr(root, "Currency", where),
        "Price": price,
        "Penalty": penalty,
        "NetSettlement": net,
    }
    return frame, amounts
