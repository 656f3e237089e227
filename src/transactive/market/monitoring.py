"""Market-power monitoring: concentration and pivotal-supplier measures per market and
interval, and screens for offers far from a resource's capability or price history.

Measures (sources in ``docs/monitoring.md``), per market and interval, with ``kw_i`` the kW
seller ``i`` offers, ``T = Σ kw_i`` and ``D`` the kW that must be bought there:

* ``hhi`` = Σ (100 · kw_i / T)², 0 … 10 000 (Herfindahl–Hirschman index on offered kW;
  10 000 / n for n equal sellers, 10 000 for one);
* ``rsi_i`` = (T − kw_i) / D, the residual supply index; ``rsi_min`` its minimum over the
  sellers (the largest seller's). RSI < 1: the others cannot cover the demand;
  :data:`RSI_SCREEN` (1.1) is CAISO's screen;
* seller ``i`` is *pivotal* when D > T − kw_i, i.e. ``rsi_i < 1`` (computed as exactly that,
  so the two never disagree); ``psi`` is the pivotal supplier indicator of FERC's screen,
  binary per market and interval: 1.0 when some seller is pivotal, else 0.0. Its mean over
  intervals (:func:`psi_frequency`, per seller) is how often a seller is pivotal.

Edge cases: without sellers ``hhi``, ``largest_share`` and ``rsi_min`` are NaN and nobody is
pivotal; with D ≤ 0 every ``rsi_i`` is +inf and nobody is pivotal.

Markets: :func:`energy_supply` / :func:`energy_demand` read the sellers and buyers of energy
from a run's BIDS rows (the leaf curves, grouped into their area's market);
:func:`flex_supply` reads each flexibility ask (FLEX_ASKS, one market per ask and interval)
and the FLEX_OFFERS that can serve it (:func:`ask_offers`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from transactive.core.records import FLEX_ASKS, FLEX_OFFERS
from transactive.errors import InvalidInputError

#: CAISO's residual-supply screen: an interval with ``rsi_min`` below it is flagged.
RSI_SCREEN = 1.1
#: HHI above which a market is highly concentrated (US DOJ/FTC Horizontal Merger Guidelines
#: 2010: 2 500; the 2023 guidelines lower it to 1 800).
HHI_HIGH = 2500.0
#: HHI above which a market is moderately concentrated (2010 guidelines).
HHI_MODERATE = 1500.0
#: Offers and demand below this (kW) are round-off, not a seller or a need (curves summed in
#: floating point leave 1e-14 kW where a home neither buys nor sells).
MIN_KW = 1e-6
#: Relative tolerance of the capability check (kW offered beyond capability × (1 + it)).
CAPABILITY_RTOL = 1e-9

KEY = ["market_id", "interval_start"]
#: The market the root of the tree offers its curve in (outside the tree, :mod:`transactive.
#: sim.runner`).
OUTSIDE = "wholesale"


def pivotal_sellers(supply: pd.DataFrame, demand: pd.DataFrame) -> pd.DataFrame:
    """One row per market, interval and seller offering more than :data:`MIN_KW`: ``kw``,
    ``share`` (of the market's offered kW), ``total_kw``, ``demand_kw``, ``rsi`` ((total −
    kw) / demand, +inf without demand) and ``pivotal`` (``rsi < 1``). Inputs as
    :func:`concentration`."""
    s = _sellers(supply)
    d = _demand(demand)
    total = s.groupby(KEY, observed=True, sort=False)["kw"].transform("sum").to_numpy(float)
    s["total_kw"] = total
    s["share"] = s["kw"].to_numpy(float) / total
    s = s.merge(d, on=KEY, how="left")
    dem = s["demand_kw"].fillna(0.0).to_numpy(float)
    s["demand_kw"] = dem
    residual = total - s["kw"].to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        rsi = np.where(dem > 0, residual / np.where(dem > 0, dem, 1.0), np.inf)
    s["rsi"] = rsi
    s["pivotal"] = rsi < 1.0
    return s


def concentration(supply: pd.DataFrame, demand: pd.DataFrame) -> pd.DataFrame:
    """Concentration and pivotal-supplier measures per market and interval (module doc).

    supply: ``market_id``, ``interval_start``, ``participant_id``, ``kw`` (≥ 0, what the
    seller offers; several rows of one seller are summed); demand: ``market_id``,
    ``interval_start``, ``kw`` (what must be bought; rows summed). Returns one row per
    market and interval present in either: ``n_sellers``, ``total_kw``, ``demand_kw``,
    ``hhi``, ``largest_share``, ``rsi_min``, ``n_pivotal``, ``pivotal``, ``pivotal_ids``
    (';'-joined, sorted), ``psi`` (1.0 | 0.0) and ``flags`` (';'-joined, '' for none):
    ``pivotal``, ``rsi_screen`` (rsi_min < 1.1), ``hhi_high`` (> 2 500), ``hhi_moderate``
    (> 1 500), ``short`` (all sellers together offer less than the demand), ``no_sellers``
    (demand but nobody offers)."""
    s = pivotal_sellers(supply, demand)
    d = _demand(demand)
    g = s.assign(hhi=(100.0 * s["share"]) ** 2).groupby(KEY, observed=True, sort=False)
    per = pd.DataFrame(
        {
            "n_sellers": g["kw"].size(),
            "total_kw": g["kw"].sum(),
            "hhi": g["hhi"].sum(),
            "largest_share": g["share"].max(),
            "rsi_min": g["rsi"].min(),
            "n_pivotal": g["pivotal"].sum(),
        }
    ).reset_index()
    piv = s[s["pivotal"].to_numpy(bool)].sort_values("participant_id")
    ids = piv.groupby(KEY, observed=True, sort=False)["participant_id"].agg(";".join)
    out = per.merge(ids.rename("pivotal_ids").reset_index(), on=KEY, how="left")
    out = out.merge(d, on=KEY, how="outer")
    out["n_sellers"] = out["n_sellers"].fillna(0).astype(np.int64)
    out["n_pivotal"] = out["n_pivotal"].fillna(0).astype(np.int64)
    out["total_kw"] = out["total_kw"].fillna(0.0)
    out["demand_kw"] = out["demand_kw"].fillna(0.0)
    out["pivotal_ids"] = out["pivotal_ids"].fillna("").astype(str)
    out["pivotal"] = out["n_pivotal"].to_numpy() > 0
    out["psi"] = out["pivotal"].to_numpy(float)
    out["flags"] = _flags(out)
    cols = [*KEY, "n_sellers", "total_kw", "demand_kw", "hhi", "largest_share", "rsi_min"]
    cols += ["n_pivotal", "pivotal", "pivotal_ids", "psi", "flags"]
    return out[cols].sort_values(KEY, ignore_index=True)


def psi_frequency(supply: pd.DataFrame, demand: pd.DataFrame) -> pd.DataFrame:
    """How often each seller is pivotal: per market and seller, ``intervals`` (market
    intervals it offers in), ``pivotal_intervals`` and ``psi`` = their ratio (the mean of
    its binary pivotal-supplier indicator over the intervals it offers in)."""
    s = pivotal_sellers(supply, demand)
    g = s.groupby(["market_id", "participant_id"], observed=True)["pivotal"]
    out = pd.DataFrame({"intervals": g.size(), "pivotal_intervals": g.sum()}).reset_index()
    out["pivotal_intervals"] = out["pivotal_intervals"].astype(np.int64)
    out["psi"] = out["pivotal_intervals"] / out["intervals"]
    return out


def _flags(c: pd.DataFrame) -> np.ndarray:
    """The ';'-joined flag names of each row of a concentration table."""
    hhi = c["hhi"].to_numpy(float)
    rsi = c["rsi_min"].to_numpy(float)
    n = c["n_sellers"].to_numpy()
    dem = c["demand_kw"].to_numpy(float)
    tests = {
        "pivotal": c["pivotal"].to_numpy(bool),
        "rsi_screen": rsi < RSI_SCREEN,
        "hhi_high": hhi > HHI_HIGH,
        "hhi_moderate": (hhi > HHI_MODERATE) & ~(hhi > HHI_HIGH),
        "short": (n > 0) & (c["total_kw"].to_numpy(float) < dem),
        "no_sellers": (n == 0) & (dem > 0),
    }
    out = np.full(len(c), "", dtype=object)
    for name, hit in tests.items():
        sep = np.where(out == "", "", ";")
        out = np.where(hit, out + sep + name, out)
    return out


def _sellers(supply: pd.DataFrame) -> pd.DataFrame:
    """Supply summed per market, interval and seller, sellers with kW > 0 only."""
    _require(supply, "supply", [*KEY, "participant_id", "kw"])
    kw = supply["kw"].to_numpy(float)
    bad = ~(np.isfinite(kw) & (kw >= 0))
    if bad.any():
        r = supply[bad].iloc[0]
        raise InvalidInputError(
            f"supply: kw {r['kw']} of {r['participant_id']} in {r['market_id']} at "
            f"{r['interval_start']} is not a finite number ≥ 0"
        )
    frame = pd.DataFrame(
        {
            "market_id": supply["market_id"].astype(str).to_numpy(),
            "interval_start": pd.to_datetime(supply["interval_start"], utc=True).to_numpy(),
            "participant_id": supply["participant_id"].astype(str).to_numpy(),
            "kw": kw,
        }
    )
    s = frame.groupby([*KEY, "participant_id"], sort=False)["kw"].sum().reset_index()
    s["interval_start"] = pd.to_datetime(s["interval_start"], utc=True)
    return s[s["kw"].to_numpy(float) > MIN_KW].reset_index(drop=True)


def _demand(demand: pd.DataFrame) -> pd.DataFrame:
    """Demand summed per market and interval (``demand_kw``)."""
    _require(demand, "demand", [*KEY, "kw"])
    kw = demand["kw"].to_numpy(float)
    bad = ~np.isfinite(kw)
    if bad.any():
        r = demand[bad].iloc[0]
        raise InvalidInputError(
            f"demand: kw {r['kw']} in {r['market_id']} at {r['interval_start']} is not finite"
        )
    frame = pd.DataFrame(
        {
            "market_id": demand["market_id"].astype(str).to_numpy(),
            "interval_start": pd.to_datetime(demand["interval_start"], utc=True).to_numpy(),
            "demand_kw": np.where(np.abs(kw) > MIN_KW, kw, 0.0),
        }
    )
    d = frame.groupby(KEY, sort=False)["demand_kw"].sum().reset_index()
    d["interval_start"] = pd.to_datetime(d["interval_start"], utc=True)
    return d


def _require(df: pd.DataFrame, what: str, columns: list[str]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InvalidInputError(f"{what}: missing columns {missing} (has {list(df.columns)})")


# --- energy ---------------------------------------------------------------------------------


def energy_supply(bids: pd.DataFrame) -> pd.DataFrame:
    """Sellers of energy per area market, interval and participant from BIDS rows
    (:data:`~transactive.core.records.BIDS`): the kW each offers for sale at the top of its
    curves, ``max(−q, 0)`` with ``q`` the quantity at the curve's highest price (its most
    negative), netted per participant and node (a home's PV against its own load where
    devices bid directly). Only leaf curves count (a node that is itself a market passes
    its children's curves up); a curve's market is mapped to its area's market (the
    ancestor just below the root), so a feeder's homes and an aggregator at the DSO compete
    in one market. Columns ``market_id``, ``interval_start``, ``participant_id``, ``kw``."""
    net = _leaf_net(bids)
    out = net.assign(kw=np.maximum(-net["q"].to_numpy(float), 0.0))
    return out[[*KEY, "participant_id", "kw"]]


def energy_demand(bids: pd.DataFrame) -> pd.DataFrame:
    """What must be bought per area market and interval (``kw``): the leaf curves' buying
    quantity at their highest price, ``max(q, 0)``, summed (see :func:`energy_supply`)."""
    net = _leaf_net(bids)
    d = net.assign(kw=np.maximum(net["q"].to_numpy(float), 0.0))
    return d.groupby(KEY, sort=False)["kw"].sum().reset_index()


def _leaf_net(bids: pd.DataFrame) -> pd.DataFrame:
    """Per area market, interval, participant and node: the leaf curves' quantity at their
    highest price (kW, + buy), summed."""
    cols = [*KEY, "participant_id", "resource_id", "node_id", "point", "quantity_kw"]
    _require(bids, "bids", cols)
    if bids.empty:
        return pd.DataFrame(
            {
                "market_id": pd.Series([], dtype=str),
                "interval_start": pd.Series([], dtype="datetime64[ns, UTC]"),
                "participant_id": pd.Series([], dtype=str),
                "node_id": pd.Series([], dtype=str),
                "q": pd.Series([], dtype=float),
            }
        )
    market = bids["market_id"].astype(str)
    resource = bids["resource_id"].astype(str)
    node = bids["node_id"].astype(str)
    markets = set(market.unique())
    leaf = ~resource.isin(markets).to_numpy(bool)
    # Parent market of every market that is a node: the market its own curve is offered in.
    inner = pd.DataFrame({"node": node[~leaf], "market": market[~leaf]}).drop_duplicates("node")
    parent = dict(zip(inner["node"], inner["market"], strict=True))
    area = {m: _area_of(m, parent) for m in markets}
    curve = [*KEY, "participant_id", "resource_id", "node_id"]
    b = pd.DataFrame(
        {
            "market_id": market[leaf].map(area).to_numpy(),
            "interval_start": pd.to_datetime(bids["interval_start"][leaf], utc=True).to_numpy(),
            "participant_id": bids["participant_id"][leaf].astype(str).to_numpy(),
            "resource_id": resource[leaf].to_numpy(),
            "node_id": node[leaf].to_numpy(),
            "q": bids["quantity_kw"][leaf].to_numpy(float),
        }
    )
    # Non-increasing curves: the quantity at the highest price is the curve's minimum.
    q = b.groupby(curve, sort=False)["q"].min().reset_index()
    net = q.groupby([*KEY, "participant_id", "node_id"], sort=False)["q"].sum().reset_index()
    net["interval_start"] = pd.to_datetime(net["interval_start"], utc=True)
    return net


def _area_of(market: str, parent: dict[str, str]) -> str:
    """The area market of ``market``: the ancestor (or itself) whose parent is the root
    market, the root being the node that bids into :data:`OUTSIDE` where that curve is
    recorded, else the top of the chain."""
    chain = [market]
    while chain[-1] in parent and len(chain) <= len(parent) + 1:
        chain.append(parent[chain[-1]])
    below_root = 3 if chain[-1] == OUTSIDE else 2
    return chain[-below_root] if len(chain) >= below_root else market


# --- flexibility ------------------------------------------------------------------------------


def ask_offers(offers: pd.DataFrame, asks: pd.DataFrame) -> pd.DataFrame:
    """Which offer rows can serve which ask in which interval: one row per (offer row, ask,
    interval) with ``row`` (position in ``offers``), ``ask_id``, ``interval_start``,
    ``participant_id``, ``kw`` and ``price_ceiling``. An offer row serves an ask when it is
    not a rebound row, is for the same interval and direction, and either answers the ask
    (``ask_id``) or is unsolicited (``ask_id`` '') at one of the ask's buses in its area."""
    FLEX_OFFERS.check(offers)
    FLEX_ASKS.check(asks)
    _check_asks(asks)
    a = asks.reset_index(drop=True)
    ask = pd.DataFrame(
        {
            "ask_id": a["ask_id"].astype(str).to_numpy(),
            "interval_start": a["interval_start"].to_numpy(),
            "direction": a["direction"].astype(str).to_numpy(),
            "area": a["area"].astype(str).to_numpy(),
            "buses": a["buses"].astype(str).to_numpy(),
            "price_ceiling": a["price_ceiling"].to_numpy(float),
        }
    )
    o = pd.DataFrame(
        {
            "row": np.arange(len(offers)),
            "offer_ask": offers["ask_id"].astype(str).to_numpy(),
            "interval_start": offers["interval_start"].to_numpy(),
            "direction": offers["direction"].astype(str).to_numpy(),
            "area": offers["area"].astype(str).to_numpy(),
            "bus": offers["bus"].astype(str).to_numpy(),
            "participant_id": offers["participant_id"].astype(str).to_numpy(),
            "kw": offers["kw"].to_numpy(float),
        }
    )
    o = o[~offers["rebound"].to_numpy(bool)]
    on = ["interval_start", "direction"]
    solicited = o.merge(ask, left_on=["offer_ask", *on], right_on=["ask_id", *on])
    located = ask.assign(bus=ask["buses"].str.split(";")).explode("bus")
    unsolicited = o[o["offer_ask"].isin(["", "nan"])].merge(
        located.drop(columns="buses"), on=[*on, "area", "bus"]
    )
    cols = ["row", "ask_id", "interval_start", "participant_id", "kw", "price_ceiling"]
    out = pd.concat([solicited[cols], unsolicited[cols]], ignore_index=True)
    return out.drop_duplicates(["row", "ask_id"]).sort_values(["ask_id", "row"], ignore_index=True)


def flex_supply(offers: pd.DataFrame, asks: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Supply and demand of flexibility for :func:`concentration`: one market per ask
    (``market_id`` = the ask's ``ask_id``) and interval; supply = the kW of the offer rows
    that can serve it (:func:`ask_offers`) per participant, demand = the ask's kW."""
    rel = ask_offers(offers, asks)
    supply = pd.DataFrame(
        {
            "market_id": rel["ask_id"].to_numpy(),
            "interval_start": rel["interval_start"].to_numpy(),
            "participant_id": rel["participant_id"].to_numpy(),
            "kw": rel["kw"].to_numpy(float),
        }
    )
    demand = pd.DataFrame(
        {
            "market_id": asks["ask_id"].astype(str).to_numpy(),
            "interval_start": asks["interval_start"].to_numpy(),
            "kw": asks["kw"].to_numpy(float),
        }
    )
    return supply, demand


def pivotal_rows(rel: pd.DataFrame, asks: pd.DataFrame) -> np.ndarray:
    """Per row of :func:`ask_offers` ``rel``: whether its participant is pivotal for the
    ask in that interval (offers more than :data:`MIN_KW` there, and the other participants'
    rows serving the ask add up to less than its kW)."""
    key = [rel["ask_id"], rel["interval_start"]]
    kw = rel["kw"]
    total = kw.groupby(key, sort=False).transform("sum").to_numpy(float)
    own = kw.groupby([*key, rel["participant_id"]], sort=False).transform("sum").to_numpy(float)
    need = pd.DataFrame(
        {
            "ask_id": asks["ask_id"].astype(str).to_numpy(),
            "interval_start": asks["interval_start"].to_numpy(),
            "need": asks["kw"].to_numpy(float),
        }
    )
    cols = ["ask_id", "interval_start"]
    ask_kw = rel[cols].merge(need, on=cols, how="left")["need"].to_numpy(float)
    return np.asarray((own > MIN_KW) & (total - own < ask_kw))


def pivotal_offer_flags(
    offers: pd.DataFrame, asks: pd.DataFrame, *, ceiling_share: float = 0.9
) -> pd.DataFrame:
    """Flags (rule ``pivotal_near_ceiling``, columns as :func:`offer_flags`) of the offer
    rows whose participant is pivotal for an ask they serve and whose cost per kWh is at
    least ``ceiling_share`` of the ask's ``price_ceiling`` — the conduct a pivotal seller
    shows when it prices towards the cap, found without any price history."""
    if not (np.isfinite(ceiling_share) and 0.0 < ceiling_share <= 1.0):
        raise InvalidInputError(f"pivotal_offer_flags: ceiling_share {ceiling_share} not in (0, 1]")
    rel = ask_offers(offers, asks)
    o = offers.reset_index(drop=True).iloc[rel["row"].to_numpy()].reset_index(drop=True)
    cost = _cost(o)
    threshold = ceiling_share * rel["price_ceiling"].to_numpy(float)
    hit = pivotal_rows(rel, asks) & (cost >= threshold)
    out = _flag(o, "pivotal_near_ceiling", cost, threshold, hit, "currency/kWh")
    out = out.drop_duplicates(["offer_id", "interval_start"])
    return out.sort_values(["offer_id", "interval_start"], ignore_index=True)


def _check_asks(asks: pd.DataFrame) -> None:
    """One row per ask and interval; kW ≥ 0 and ceilings finite."""
    dup = asks.duplicated(["ask_id", "interval_start"]).to_numpy(bool)
    kw = asks["kw"].to_numpy(float)
    ceiling = asks["price_ceiling"].to_numpy(float)
    for bad, what in (
        (dup, "appears twice for one interval"),
        (~(np.isfinite(kw) & (kw >= 0)), "kw is not a finite number ≥ 0"),
        (~np.isfinite(ceiling), "price_ceiling is not finite"),
    ):
        if bad.any():
            r = asks[bad].iloc[0]
            raise InvalidInputError(f"flex ask {r['ask_id']} at {r['interval_start']}: {what}")


# --- offer screens --------------------------------------------------------------------------


def offer_flags(
    offers: pd.DataFrame,
    capability_kw: pd.Series | None,
    history: pd.DataFrame | None = None,
    *,
    factor: float = 1.5,
    withhold_percent: float = 10.0,
) -> pd.DataFrame:
    """Screens of FLEX_OFFERS rows (rebound rows are not screened), one flag per row and rule:

    * ``over_capability``: kW > the resource's capability (``capability_kw``, indexed by
      ``resource_id``; None skips both capability rules);
    * ``withholding``: kW < ``withhold_percent`` % of the capability;
    * ``above_own_history``: the row's cost per kWh (``price + availability_price /
      duration_h``, currency/kWh) > ``factor`` × the median cost of the same resource's
      offers in ``history`` (FLEX_OFFERS; None: the offers themselves);
    * ``above_peers``: cost > ``factor`` × the 95th percentile of the cost of the other
      participants' offers in the same direction in ``history``.

    Returns ``offer_id``, ``participant_id``, ``resource_id``, ``interval_start``, ``rule``,
    ``value``, ``threshold``, ``unit`` (kW or currency/kWh)."""
    FLEX_OFFERS.check(offers)
    hist = offers if history is None else history
    FLEX_OFFERS.check(hist)
    if not (np.isfinite(factor) and factor >= 1.0):
        raise InvalidInputError(f"offer_flags: factor {factor} is not ≥ 1")
    if not 0.0 <= withhold_percent <= 100.0:
        raise InvalidInputError(f"offer_flags: withhold_percent {withhold_percent} not in 0 … 100")
    o = offers[~offers["rebound"].to_numpy(bool)].reset_index(drop=True)
    res = o["resource_id"].astype(str)
    kw = o["kw"].to_numpy(float)
    cost = _cost(o)
    parts = []
    if capability_kw is not None:
        cap_map = pd.Series(capability_kw.to_numpy(float), index=capability_kw.index.astype(str))
        cap = res.map(cap_map).to_numpy(float)
        if np.isnan(cap).any():
            r = o[np.isnan(cap)].iloc[0]
            raise InvalidInputError(
                f"offer_flags: no capability for resource {r['resource_id']} (offer "
                f"{r['offer_id']})"
            )
        parts.append(_flag(o, "over_capability", kw, cap, kw > cap * (1 + CAPABILITY_RTOL), "kW"))
        low = cap * withhold_percent / 100.0
        parts.append(_flag(o, "withholding", kw, low, kw < low, "kW"))
    h = hist[~hist["rebound"].to_numpy(bool)]
    h_cost = pd.Series(_cost(h), index=h["resource_id"].astype(str).to_numpy())
    median = res.map(h_cost.groupby(level=0).median()).to_numpy(float)
    own = factor * median
    parts.append(_flag(o, "above_own_history", cost, own, cost > own, "currency/kWh"))
    peer = _peer_q95(o, h, _cost(h)) * factor
    parts.append(_flag(o, "above_peers", cost, peer, cost > peer, "currency/kWh"))
    hits = [p for p in parts if len(p)]
    out = pd.concat(hits, ignore_index=True) if hits else parts[0]
    return out.sort_values(["offer_id", "interval_start", "rule"], ignore_index=True)


def _cost(o: pd.DataFrame) -> np.ndarray:
    """Cost per kWh of each offer row: utilisation price + availability price / duration."""
    dt = o["duration_h"].to_numpy(float)
    return np.asarray(o["price"].to_numpy(float) + o["availability_price"].to_numpy(float) / dt)


def _peer_q95(o: pd.DataFrame, h: pd.DataFrame, h_cost: np.ndarray) -> np.ndarray:
    """Per offer row, the 95th percentile of the history cost of the other participants'
    rows in the same direction (NaN where there are none). One quantile per (participant,
    direction) pair, not per row."""
    who, way = o["participant_id"].astype(str), o["direction"].astype(str)
    h_who = h["participant_id"].astype(str).to_numpy()
    h_way = h["direction"].astype(str).to_numpy()
    pairs = pd.DataFrame({"p": who, "d": way}).drop_duplicates()
    q = {}
    for p, d in zip(pairs["p"], pairs["d"], strict=True):
        peers = h_cost[(h_who != p) & (h_way == d)]
        q[(p, d)] = float(np.quantile(peers, 0.95)) if peers.size else np.nan
    keys = pd.MultiIndex.from_arrays([who, way])
    return np.asarray(pd.Series(q, dtype=float).reindex(keys).to_numpy(float))


def _flag(
    o: pd.DataFrame, rule: str, value: np.ndarray, threshold: np.ndarray, hit: np.ndarray, unit: str
) -> pd.DataFrame:
    """The flag rows of one rule."""
    hit = np.asarray(hit, dtype=bool)
    return pd.DataFrame(
        {
            "offer_id": o["offer_id"].astype(str).to_numpy()[hit],
            "participant_id": o["participant_id"].astype(str).to_numpy()[hit],
            "resource_id": o["resource_id"].astype(str).to_numpy()[hit],
            "interval_start": o["interval_start"].to_numpy()[hit],
            "rule": rule,
            "value": value[hit],
            "threshold": threshold[hit],
            "unit": unit,
        }
    )
