"""Areas: summary, paged buses and node tree; the TSO sees the summary only."""

from __future__ import annotations

from conftest import Api


def test_areas_list_and_one_area_with_paged_buses_and_tree(api: Api) -> None:
    who = api.party("p1", "participant", area="semiurb4")
    areas = api.get("/v1/areas", who).json()
    names = [a["name"] for a in areas]
    assert names == sorted(api.services.market.areas)
    name = names[0]
    feeder = api.services.market.areas[name].feeder
    whole = api.get(f"/v1/areas/{name}", who, params={"limit": 10_000}).json()
    assert whole["n_buses"] == feeder.n_bus == len(whole["buses"])
    assert [b["name"] for b in whole["buses"]] == feeder.bus_names
    page = api.get(f"/v1/areas/{name}", who, params={"offset": 2, "limit": 3}).json()
    assert [b["name"] for b in page["buses"]] == feeder.bus_names[2:5]
    tree = page["tree"]
    assert tree["kind"] == "area" and tree["id"] == name
    (fd,) = tree["children"]
    assert fd["kind"] == "feeder" and fd["id"] == feeder.name
    assert [n["id"] for n in fd["children"]] == feeder.bus_names[2:5]
    assert api.get("/v1/areas/nowhere", who).status_code == 404
    assert api.get("/v1/areas", who, params={"limit": 0}).status_code == 422


def test_tso_sees_the_summary_only(api: Api) -> None:
    tso = api.party("tso1", "tso")
    name = sorted(api.services.market.areas)[0]
    r = api.get(f"/v1/areas/{name}", tso)
    assert r.status_code == 200
    doc = r.json()
    assert doc["buses"] is None and doc["tree"] is None and doc["n_buses"] > 0
    assert api.get("/v1/areas", {}).status_code == 401
