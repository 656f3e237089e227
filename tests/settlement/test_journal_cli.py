"""`transactive journal verify|show|prove` as a user runs them: subprocesses, --json stdout that
is exactly one JSON document, exit 0 verified / 1 tampering (the record named) / 2 bad input,
on the journal of a small simulation (every record table, a head at every market close)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from transactive.settlement import journal as J

OPERATOR = J.operator_key("cli test operator")
TINY = """\
name = "tiny"
region = "us"
feeder = "pandapower:kerber_landnetz_kabel_1"
start = "2016-07-12T18:00:00Z"
end = "2016-07-12T19:00:00Z"
market_interval_min = 15
powerflow_interval_min = 15
designs = ["bau-flat", "total-dso"]
warmup_days = 0
seed = 1
homes_per_load = 1

[der]
penetration = { ev = 50, pv = 50 }

[wholesale]
source = "prices"
prices = "prices.csv"
"""


def cli(*args: object) -> subprocess.CompletedProcess[str]:
    """Run `transactive journal ARGS` in a fresh interpreter."""
    env = {**os.environ, "COLUMNS": "160", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "transactive.cli", "journal", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def one_json_document(res: subprocess.CompletedProcess[str], code: int = 0) -> Any:
    """The whole stdout parsed as JSON (any foreign line fails) and the exit code."""
    assert res.returncode == code, res.stdout + res.stderr
    return json.loads(res.stdout)


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The record tables of a one-hour, eight-home run of two designs."""
    from transactive.sim.batch import compare
    from transactive.sim.scenario import load_scenario

    d = tmp_path_factory.mktemp("tiny")
    (d / "prices.csv").write_text("start,price\n2016-07-12T00:00:00Z,40\n")
    (d / "tiny.toml").write_text(TINY)
    results = compare(load_scenario(d / "tiny.toml"), [1], workers=1).results
    return {name: getattr(results, name) for name in J.RECORD_TABLES}


def make_journal(path: Path, tables: dict[str, Any]) -> Path:
    with J.open_journal(path, create=True, operator_public_key=OPERATOR) as jr:
        J.journal_tables(jr, tables, OPERATOR)
    return path


@pytest.fixture(scope="module")
def demo(tables: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_journal(tmp_path_factory.mktemp("demo") / "journal.sqlite", tables)


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "operator.pub"
    path.write_text(J.public_bytes(OPERATOR).hex() + "\n")
    return path


def test_the_demo_journal_verifies(demo: Path, key_file: Path) -> None:
    with J.open_journal(demo) as jr:
        size, heads = jr.size, len(jr.heads())
        kinds = {r["kind"] for _, r in jr.records()}
    assert kinds == set(J.RECORD_TABLES) and heads == 4  # one head per 15-minute close
    report = one_json_document(cli("verify", demo, "--key", key_file, "--json"))
    assert report["ok"] and report["records"] == size and report["signed_size"] == size
    assert report["problems"] == [] and report["first"] is None
    text = cli("verify", demo)
    assert text.returncode == 0 and text.stdout.startswith(f"verified: {size} records")


def test_one_flipped_byte_in_the_file_fails_naming_the_record(demo: Path, tmp_path: Path) -> None:
    raw = bytearray(demo.read_bytes())
    with J.open_journal(demo) as jr:
        rid = next(r["id"] for _, r in jr.records(kind="settlement") if r["amount"])
        entry = jr.entry(rid)[1]
    at = raw.find(entry)
    assert at > 0 and raw.find(entry, at + 1) < 0
    amount = entry.find(b'"amount":') + len(b'"amount":') + 1  # a digit of the amount
    raw[at + amount] = ord("7") if raw[at + amount] != ord("7") else ord("3")
    bad = tmp_path / "edited.sqlite"
    bad.write_bytes(bytes(raw))
    res = cli("verify", bad)
    assert res.returncode == 1, res.stdout + res.stderr
    assert rid in res.stdout and rid in res.stderr
    report = one_json_document(cli("verify", bad, "--json"), code=1)
    assert not report["ok"] and report["first"]["record_id"] == rid
    assert report["first"]["index"] == J.open_journal(demo).index(rid)


def test_prove_writes_a_proof_a_participant_checks_offline(
    demo: Path, tmp_path: Path, key_file: Path
) -> None:
    with J.open_journal(demo) as jr:
        index, rec = next(jr.records(kind="meter"))
    proof = tmp_path / "proof.json"
    res = cli("prove", demo, "--record", rec["id"], "--out", proof)
    assert res.returncode == 0, res.stderr
    doc = json.loads(proof.read_text())
    assert [e["index"] for e in doc["records"]] == [index]
    report = one_json_document(cli("verify", proof, "--key", key_file, "--json"))
    assert report["ok"]
    assert one_json_document(cli("verify", demo, "--record", rec["id"], "--json"))["record"][
        "included"
    ]
    doc["records"][0]["record"]["import_kwh"] = 123.0
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(doc))
    report = one_json_document(cli("verify", forged, "--key", key_file, "--json"), code=1)
    assert report["first"]["record_id"] == rec["id"]
    res = cli("verify", proof)
    assert res.returncode == 2 and "--key" in res.stderr  # no key to trust in a proof file
    bundle = one_json_document(cli("prove", demo, "--participant", rec["participant_id"]))
    assert {e["record"]["participant_id"] for e in bundle["records"]} == {rec["participant_id"]}
    assert len(bundle["records"]) > 1


def test_rewritten_history_is_caught_by_a_saved_proof(
    demo: Path, tables: dict[str, Any], tmp_path: Path, key_file: Path
) -> None:
    with J.open_journal(demo) as jr:
        _, rec = next(jr.records(kind="settlement"))
    proof = tmp_path / "saved.json"
    assert cli("prove", demo, "--record", rec["id"], "--out", proof).returncode == 0
    changed = {**tables, "settlement": tables["settlement"].copy()}
    changed["settlement"].loc[changed["settlement"].index[0], "amount"] = 0.0
    rewritten = make_journal(tmp_path / "rewritten.sqlite", changed)  # re-signed by the operator
    assert cli("verify", rewritten, "--key", key_file).returncode == 0
    res = cli("verify", rewritten, "--key", key_file, "--head", proof, "--json")
    report = one_json_document(res, code=1)
    kinds = {p["kind"] for p in report["problems"]}
    assert {"history-rewritten", "record-changed"} <= kinds
    assert report["first"]["record_id"] == rec["id"] == "settlement:0"


def test_a_key_the_verifier_trusts_decides(demo: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.pub"
    other.write_text(J.public_bytes(J.operator_key("not the operator")).hex())
    report = one_json_document(cli("verify", demo, "--key", other, "--json"), code=1)
    assert report["first"]["kind"] == "head-signature"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("verify", "{dir}/missing.sqlite"), "no such journal"),
        (("verify", "{dir}/notes.txt"), "not a journal"),
        (("verify", "{demo}", "--key", "{dir}/notes.txt"), "notes.txt"),
        (("verify", "{demo}", "--key", "{dir}/missing.pub"), "missing.pub"),
        (("verify", "{demo}", "--record", "no-such-id"), "no-such-id"),
        (("verify", "{demo}", "--head", "{dir}/notes.txt"), "notes.txt"),
        (("show", "{dir}/notes.txt"), "not a journal"),
        (("show", "{demo}", "--id", "no-such-id"), "no-such-id"),
        (("prove", "{demo}"), "exactly one of --record and --participant"),
        (("prove", "{demo}", "--record", "meter:0", "--head-size", "3"), "size 3"),
        (("prove", "{demo}", "--record", "meter:0", "--out", "{dir}/notes.txt"), "exists"),
    ],
)
def test_bad_input_exits_2_with_a_message(
    demo: Path, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    (tmp_path / "notes.txt").write_text("not a journal\n")
    res = cli(*(a.format(dir=tmp_path, demo=demo) for a in args))
    assert res.returncode == 2, res.stdout + res.stderr
    assert message in res.stderr and "Traceback" not in res.stderr


def test_show_json(demo: Path) -> None:
    out = one_json_document(cli("show", demo, "--kind", "awards", "--limit", "3", "--json"))
    assert len(out["records"]) == 3 and {r["record"]["kind"] for r in out["records"]} == {"awards"}
    one = one_json_document(cli("show", demo, "--id", "meter:2", "--json"))
    assert one["records"][0]["record"]["id"] == "meter:2"
    assert len(one["heads"]) == 4


PROBE = """
import json, sys
from transactive.cli import app
try:
    app(sys.argv[1:], prog_name="transactive")
except SystemExit as exc:
    code = exc.code
heavy = [m for m in ("numpy", "pandas", "scipy", "cryptography") if m in sys.modules]
sys.stderr.write("\\n" + json.dumps({"code": code, "heavy": heavy}) + "\\n")
"""


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("journal", "--help"), 0),
        (("journal", "verify", "--help"), 0),
        (("journal", "verify", "missing.sqlite"), 2),
        (("journal", "show", "notes.txt"), 2),
    ],
)
def test_help_and_bad_arguments_load_nothing_heavy(
    tmp_path: Path, args: tuple[str, ...], code: int
) -> None:
    (tmp_path / "notes.txt").write_text("not a journal\n")
    res = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    probe = json.loads(res.stderr.strip().splitlines()[-1])
    assert probe == {"code": code, "heavy": []}, res.stderr
