"""Bid files and the `transactive clear` command: format, errors with line and column."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from transactive.cli import app
from transactive.errors import InvalidInputError
from transactive.market.bidfile import BidFileError, read_bids

EXAMPLE = Path(__file__).parents[2] / "examples" / "bids.csv"
runner = CliRunner()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bids.csv"
    path.write_text(text)
    return path


def test_example_file_clears_by_hand() -> None:
    res = runner.invoke(app, ["clear", str(EXAMPLE), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)["intervals"]
    assert [r["interval"] for r in out] == [
        "2026-07-01T17:00:00+00:00",
        "2026-07-01T17:15:00+00:00",
    ]
    first, second = out
    # 17:00 — at 0.18 $/kWh demand (40 + 7.2 + 3.5 + 3.5) meets supply (4.2 + 30 + 20).
    assert first["price"] == pytest.approx(0.18) and first["quantity"] == pytest.approx(54.2)
    assert first["status"] == "cleared" and first["awards"]["h04-wh"] == 0
    # 17:15 — the 0.18 tier is marginal and gets what is left: 49.2 − 32.1 = 17.1 kW.
    assert second["awards"]["grid-tier2"] == pytest.approx(-17.1)
    for r in out:
        assert sum(r["awards"].values()) == pytest.approx(0.0, abs=1e-9)
        assert sum(r["payments"].values()) == pytest.approx(0.0, abs=1e-9)
    # Every award comes with its bid's owner (the file's owner column) and payment ($/h).
    assert first["awards"]["h01-ev"] == 7.2 and first["owners"]["h01-ev"] == "house-01"
    assert first["payments"]["h01-ev"] == pytest.approx(7.2 * 0.18)


def test_table_output_and_help() -> None:
    res = runner.invoke(app, ["clear", str(EXAMPLE)])
    assert res.exit_code == 0 and "0.1800" in res.stdout and "grid-tier2" in res.stdout
    assert runner.invoke(app, ["clear", "--help"]).exit_code == 0


def test_single_auction_without_interval_column_and_price_taker(tmp_path: Path) -> None:
    path = write(tmp_path, "bid_id,side,price,quantity\nload,buy,,5\npv,sell,0.05,3\n")
    res = runner.invoke(app, ["clear", str(path), "--json", "--floor", "0", "--cap", "1"])
    r = json.loads(res.stdout)["intervals"][0]
    assert r["interval"] is None and r["status"] == "shortage" and r["price"] == 1.0
    assert r["awards"] == {"load": 3.0, "pv": -3.0}
    assert r["owners"] == {"load": "load", "pv": "pv"}  # no owner column: the bid id


def test_no_trade_prints_null_price(tmp_path: Path) -> None:
    path = write(tmp_path, "bid_id,side,price,quantity\na,buy,0.1,5\nb,sell,0.3,3\n")
    r = json.loads(runner.invoke(app, ["clear", str(path), "--json"]).stdout)["intervals"][0]
    assert r["price"] is None and r["status"] == "no_trade"


@pytest.mark.parametrize(
    ("text", "line", "column", "message"),
    [
        ("bid_id,side,price,quantity\na,buy,0.1,5\nb,hold,0.3,3\n", 3, "side", "'hold'"),
        ("bid_id,side,price,quantity\na,buy,abc,5\n", 2, "price", "'abc' is not a number"),
        ("bid_id,side,price,quantity\na,buy,9,5\n", 2, "price", "outside"),
        ("bid_id,side,price,quantity\na,buy,0.1,-5\n", 2, "quantity", "negative"),
        ("bid_id,side,price,quantity\na,buy,0.1,\n", 2, "quantity", "not a number"),
        ("bid_id,side,price,quantity\na,buy,0.1,inf\n", 2, "quantity", "finite"),
        ("bid_id,side,price,quantity\n,buy,0.1,1\n", 2, "bid_id", "empty"),
        ("bid_id,side,price,quantity\na,buy,0.1,1\na,sell,0.1,1\n", 3, "bid_id", "duplicate"),
        ("bid_id,side,price\na,buy,0.1\n", 1, None, "missing column 'quantity'"),
        ("bid_id,side,price,quantity,colour\na,buy,0.1,1,red\n", 1, "colour", "unknown"),
        (
            "bid_id,side,price,quantity,interval\na,buy,0.1,1,2026-07-01T17:00\n",
            2,
            "interval",
            "no time zone",
        ),
        (
            "bid_id,side,price,quantity,interval\na,buy,0.1,1,yesterday\n",
            2,
            "interval",
            "not an ISO 8601",
        ),
        # Blank lines count: the bad row is line 4 as an editor shows it.
        ("bid_id,side,price,quantity\na,buy,0.1,5\n\nb,hold,0.3,3\n", 4, "side", "'hold'"),
        ("\n\nbid_id,side,price,quantity\n\n\na,buy,x,5\n", 6, "price", "'x' is not"),
        ("bid_id,side,price,quantity\r\n\r\na,buy,0.1,-1\r\n", 3, "quantity", "negative"),
        # A quoted field spanning lines: the next row's line is still right.
        ('bid_id,side,price,quantity\n"a\nb",buy,0.1,5\nc,buy,nan,1\n', 4, "price", "'nan'"),
        # A trailing extra field (or a missing one) is named as such, not as a bad side.
        ("bid_id,side,price,quantity\na,buy,0.1,5,extra\n", 2, None, "5 fields, the header has 4"),
        ("bid_id,side,price,quantity\na,buy,0.1,5\n\nb,sell,0.1\n", 4, None, "3 fields"),
        ("bid_id,side,price,quantity,side\na,buy,0.1,5,sell\n", 1, "side", "given twice"),
        ("bid_id,side,price,quantity\na,buy,0.1,5,\n", 2, None, "5 fields"),
    ],
)
def test_bad_file_names_line_and_column(
    tmp_path: Path, text: str, line: int, column: str | None, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(BidFileError, match=message) as err:
        read_bids(path, -1.0, 5.0)
    assert (err.value.line, err.value.column) == (line, column)
    res = runner.invoke(app, ["clear", str(path)])
    assert res.exit_code == 2
    assert f"bids.csv:{line}" in res.stderr and message.strip("'") in res.stderr


def test_missing_and_empty_files_exit_2(tmp_path: Path) -> None:
    assert runner.invoke(app, ["clear", str(tmp_path / "nope.csv")]).exit_code == 2
    res = runner.invoke(app, ["clear", str(write(tmp_path, ""))])
    assert res.exit_code == 2 and "empty file" in res.stderr
    res = runner.invoke(app, ["clear", str(write(tmp_path, "\n  \n\n"))])
    assert res.exit_code == 2 and "empty file" in res.stderr


def test_a_directory_is_not_a_bid_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="is a directory, not a bid file"):
        read_bids(tmp_path, 0.0, 1.0)
    res = runner.invoke(app, ["clear", str(tmp_path)])
    assert res.exit_code == 2 and "is a directory" in res.stderr
    assert isinstance(res.exception, SystemExit)  # a clean exit, not an uncaught error


def test_text_that_is_not_utf8_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "bids.csv"
    path.write_bytes(b"bid_id,side,price,quantity\na,buy,0.1,5\nb,buy,0.1,\xff\n")
    with pytest.raises(BidFileError, match="not UTF-8") as err:
        read_bids(path, 0.0, 1.0)
    assert err.value.line == 3


def test_owner_column_is_carried_and_defaults_to_the_bid_id(tmp_path: Path) -> None:
    text = (
        "bid_id,side,price,quantity,owner\n"
        "h1-ev,buy,0.3,5,home-1\nh1-pv,sell,0.1,2,home-1\ngrid,sell,0.2,10,\n"
    )
    parsed = read_bids(write(tmp_path, text), 0.0, 1.0)
    assert parsed.book.owner.tolist() == ["home-1", "home-1", "grid"]
    assert parsed.interval_starts is None and parsed.line.tolist() == [2, 3, 4]
    no_owner = read_bids(write(tmp_path, "bid_id,side,price,quantity\na,buy,0.3,5\n"), 0, 1)
    assert no_owner.book.owner.tolist() == ["a"]


def test_byte_order_mark_and_spaces_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bids.csv"
    path.write_bytes("\ufeffbid_id, side ,price,quantity\n a , BUY , 0.3 , 5 \n".encode())
    parsed = read_bids(path, 0.0, 1.0)
    assert parsed.book.ids.tolist() == ["a"] and parsed.book.curves.quantity.max() == 5.0


def test_unknown_bus_names_its_line_after_blank_lines(tmp_path: Path) -> None:
    text = "bid_id,side,price,quantity,bus\n\na,buy,0.3,5,b1\n\nb,sell,0.1,5,b9\n"
    parsed = read_bids(write(tmp_path, text), 0.0, 1.0)
    with pytest.raises(BidFileError, match="unknown bus 'b9'") as err:
        parsed.bus_positions(["b0", "b1"])
    assert err.value.line == 5


def test_same_bid_id_in_two_intervals_is_fine(tmp_path: Path) -> None:
    text = (
        "bid_id,side,price,quantity,interval\n"
        "a,buy,0.2,1,2026-07-01T17:00:00Z\na,buy,0.2,1,2026-07-01T17:15:00Z\n"
    )
    assert read_bids(write(tmp_path, text), 0.0, 1.0).book.n_intervals == 2


def test_duplicate_is_found_across_time_zone_spellings(tmp_path: Path) -> None:
    text = (
        "bid_id,side,price,quantity,interval\n"
        "a,buy,0.2,1,2026-07-01T17:00:00Z\na,buy,0.2,1,2026-07-01T18:00:00+01:00\n"
    )
    with pytest.raises(BidFileError, match="duplicate") as err:
        read_bids(write(tmp_path, text), 0.0, 1.0)
    assert err.value.line == 3


def test_offsets_normalise_to_utc(tmp_path: Path) -> None:
    text = (
        "bid_id,side,price,quantity,interval\n"
        "a,buy,0.2,1,2026-07-01T17:00:00Z\nb,sell,0.1,1,2026-07-01T19:00:00+02:00\n"
    )
    parsed = read_bids(write(tmp_path, text), 0.0, 1.0)
    assert parsed.book.n_intervals == 1
