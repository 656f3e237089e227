"""`transactive journal verify|show|prove`: check a journal offline, read it, export proofs.

Like :mod:`transactive.cli`, this module imports only the standard library and typer; the
journal code (numpy, cryptography) loads inside the commands after the arguments are
checked. Exit codes: 0 verified, 1 tampering found (the first bad record is named), 2 bad
input (no such file, not a journal, bad key file). ``--json`` prints one JSON document.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from transactive.errors import InvalidInputError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from transactive.settlement.journal import Journal, VerifyReport

journal_app = typer.Typer(
    help="The Merkle journal: verify it offline, show records, export inclusion proofs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

SQLITE_MAGIC = b"SQLite format 3\x00"
KEY_HELP = (
    "Operator public key to trust (PEM or 64 hex digits, in a file). Default: the key stored"
    " in the journal, which whoever can edit the journal can also replace."
)


def _kind_of(path: Path) -> str:
    """``"sqlite"`` or ``"json"`` by the file's first bytes; InvalidInputError otherwise."""
    from transactive.cli import _check_input_file

    _check_input_file(path, "journal")
    with path.open("rb") as fh:
        start = fh.read(16)
    if start == SQLITE_MAGIC:
        return "sqlite"
    if start.lstrip()[:1] == b"{":
        return "json"
    raise InvalidInputError(f"{path}: not a journal (neither an SQLite journal nor a JSON proof)")


def _read_json(path: Path, what: str) -> Any:
    from transactive.cli import _check_input_file

    _check_input_file(path, what)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInputError(f"{path}: not a JSON {what} ({exc})") from None


def _key(path: Path | None) -> Ed25519PublicKey | None:
    if path is None:
        return None
    from transactive.cli import _check_input_file
    from transactive.settlement.journal import load_public_key

    _check_input_file(path, "public key file")
    try:
        return load_public_key(path)
    except ValueError as exc:
        raise InvalidInputError(f"--key {path}: {exc}") from None


def _open(path: Path) -> Journal:
    from transactive.settlement.journal import open_journal

    return open_journal(path)


@journal_app.command("verify")
def verify_cmd(
    journal: Annotated[
        Path, typer.Argument(help="Journal (SQLite file) or a proof/bundle JSON from `prove`.")
    ],
    head: Annotated[
        Path | None,
        typer.Option(
            "--head",
            help="A signed head (or proof) saved earlier: check the journal"
            " still extends it (no rewritten history).",
        ),
    ] = None,
    record: Annotated[
        str | None,
        typer.Option("--record", help="Also prove this record's inclusion in the newest head."),
    ] = None,
    key: Annotated[Path | None, typer.Option("--key", help=KEY_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Check a journal offline: every record's bytes, hashes, sequence and canonical form,
    every signed head, and (with --head) that history was not rewritten."""
    from transactive.cli import _errors

    with _errors():
        kind = _kind_of(journal)
        saved = _read_json(head, "signed head") if head is not None else None
        trusted = _key(key)
        if kind == "json":
            report = _verify_bundle_file(journal, trusted, record)
        else:
            report = _verify_journal_file(journal, trusted, saved, record)
    _print_report(report, as_json)
    if not report.ok:
        raise typer.Exit(code=1)


def _verify_bundle_file(path: Path, trusted: Any, record: str | None) -> VerifyReport:
    from transactive.settlement.journal import verify_bundle

    if trusted is None:
        raise InvalidInputError(
            f"{path}: a proof file carries no key to trust; pass the operator's with --key"
        )
    bundle = _read_json(path, "proof")
    if record is not None:
        ids = [e.get("record", {}).get("id") for e in bundle.get("records", [])]
        if record not in ids:
            raise InvalidInputError(f"{path}: holds no record {record!r}")
    return verify_bundle(bundle, trusted)


def _verify_journal_file(path: Path, trusted: Any, saved: Any, record: str | None) -> VerifyReport:
    from dataclasses import replace

    from transactive.settlement.journal import BUNDLE_FORMAT, SignedTreeHead

    saved_head: SignedTreeHead | None = None
    bundled: list[Any] = []
    if saved is not None:
        is_bundle = isinstance(saved, dict) and saved.get("format") == BUNDLE_FORMAT
        saved_head = SignedTreeHead.from_json(saved["head"] if is_bundle else saved)
        bundled = saved.get("records", []) if is_bundle else []
    with _open(path) as jr:
        if record is not None and not any(_entry_id(e) == record for e in bundled):
            jr.index(record)  # an unknown id is bad input, unless a saved proof holds it
        report = jr.verify(trusted, saved_head)
        extra = _bundled_problems(jr, bundled)
        checked = dict(report.checked)
        if record is not None:
            problem, checked["record"] = _prove_record(jr, record, saved_head, trusted)
            extra += [problem] if problem is not None else []
    if extra:
        report = replace(report, problems=report.problems + tuple(extra), checked=checked)
    else:
        report = replace(report, checked=checked)
    return report


def _entry_id(entry: Any) -> Any:
    return entry.get("record", {}).get("id") if isinstance(entry, dict) else None


def _bundled_problems(jr: Journal, bundled: list[Any]) -> list[Any]:
    """Records of a saved proof that the journal no longer holds as they were."""
    from transactive.settlement.journal import JournalError, Problem, canonical_json

    problems = []
    for entry in bundled:
        rid, index = _entry_id(entry), entry.get("index")
        try:
            now_index, data = jr.entry(str(rid))
        except JournalError:
            problems.append(
                Problem("record-removed", f"record {index} ({rid}) is gone", index, rid)
            )
            continue
        if now_index != index or data != canonical_json(entry.get("record")):
            problems.append(
                Problem(
                    "record-changed",
                    f"record {index} ({rid}) differs from the saved proof (now index {now_index})",
                    index,
                    rid,
                )
            )
    return problems


def _prove_record(
    jr: Journal, record: str, saved_head: Any, trusted: Any
) -> tuple[Any, dict[str, Any]]:
    """Inclusion of ``record`` (recomputed from its stored bytes) in the saved head, or the
    journal's newest head; a problem naming it if the proof fails."""
    from transactive.settlement import merkle
    from transactive.settlement.journal import JournalError, Problem

    try:
        index, data = jr.entry(record)
    except JournalError:
        return Problem("record-removed", f"record {record} is gone", None, record), {}
    heads = [h for h in jr.heads() if h.tree_size > index]
    head = saved_head if saved_head is not None and saved_head.tree_size > index else None
    head = head if head is not None else (heads[-1] if heads else None)
    if head is None:
        info = {"id": record, "index": index, "included": None, "reason": "not yet signed"}
        return None, info
    try:
        proof = jr.inclusion_proof(record, head) if head.tree_size <= jr.size else []
    except JournalError:
        proof = []
    ok = merkle.verify_inclusion(
        merkle.leaf_hash(data), index, head.tree_size, proof, head.root_hash
    )
    info = {"id": record, "index": index, "head_size": head.tree_size, "included": ok}
    if ok:
        return None, info
    return Problem(
        "inclusion",
        f"record {index} ({record}) is not included under the head of size {head.tree_size}",
        index,
        record,
    ), info


def _print_report(report: VerifyReport, as_json: bool) -> None:
    from transactive.cli import _print_json

    if as_json:
        _print_json(report.to_json())
        return
    first = report.first
    if first is None:
        line = (
            f"verified: {report.records} records, {report.heads} signed head(s), the newest"
            f" signing {report.signed_size} record(s); root {report.root_hash.hex()}"
        )
        typer.echo(line)
        rec = report.checked.get("record")
        if rec:
            state = "included" if rec.get("included") else "not yet under a signed head"
            typer.echo(f"record {rec['id']} (index {rec['index']}): {state}")
        return
    where = "" if first.index is None else f"record {first.index}"
    where += f" ({first.record_id})" if first.record_id else ""
    typer.echo(f"TAMPERED: {first.kind}: {first.message}")
    for p in report.problems:
        if p is not first:
            typer.echo(f"  also {p.kind}: {p.message}")
    prefix = typer.style("error:", fg="red", bold=True)
    typer.echo(f"{prefix} journal verification failed at {where or 'a signed head'}", err=True)


@journal_app.command("show")
def show_cmd(
    journal: Annotated[Path, typer.Argument(help="Journal (SQLite file).")],
    record_id: Annotated[str | None, typer.Option("--id", help="Show this record only.")] = None,
    kind: Annotated[str | None, typer.Option("--kind", help="Only records of this kind.")] = None,
    limit: Annotated[
        int, typer.Option("--limit", help="At most this many records (0: all).")
    ] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show records of a journal (no verification: use `verify` for that)."""
    from transactive.cli import _errors, _print_json

    with _errors():
        if limit < 0:
            raise InvalidInputError(f"--limit must be ≥ 0, got {limit}")
        if _kind_of(journal) != "sqlite":
            raise InvalidInputError(f"{journal}: not a journal (a JSON proof: use verify)")
        with _open(journal) as jr:
            if record_id is not None:
                rows = [(jr.index(record_id), jr.record(record_id))]
            else:
                rows = list(jr.records(kind=kind, limit=limit or None))
            size, heads = jr.size, jr.heads()
    if as_json:
        _print_json(
            {
                "size": size,
                "heads": [h.to_json() for h in heads],
                "records": [{"index": i, "record": r} for i, r in rows],
            }
        )
        return
    typer.echo(f"{journal}: {size} records, {len(heads)} signed head(s)")
    for i, r in rows:
        typer.echo(f"{i:>8}  {r.get('id')}  {r.get('kind')}  {r.get('participant_id') or '-'}")


@journal_app.command("prove")
def prove_cmd(
    journal: Annotated[Path, typer.Argument(help="Journal (SQLite file).")],
    record: Annotated[str | None, typer.Option("--record", help="The record to prove.")] = None,
    participant: Annotated[
        str | None,
        typer.Option("--participant", help="Prove all of this participant's records instead."),
    ] = None,
    head_size: Annotated[
        int | None, typer.Option("--head-size", help="Prove under the head of this size.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the proof here (default: stdout).")
    ] = None,
) -> None:
    """Write inclusion proof(s) with the signed head as JSON, for `verify` or a participant
    to check offline (only hashes of other participants' records are in it)."""
    from transactive.cli import _errors

    with _errors():
        if (record is None) == (participant is None):
            raise InvalidInputError("give exactly one of --record and --participant")
        if _kind_of(journal) != "sqlite":
            raise InvalidInputError(f"{journal}: not a journal")
        if out is not None and out.exists():
            raise InvalidInputError(f"--out {out}: already exists (will not overwrite)")
        from transactive.settlement.journal import export_bundle

        with _open(journal) as jr:
            head = jr.head(head_size)
            if record is not None:
                owner = jr.record(record).get("participant_id")
                bundle = export_bundle(jr, owner, head, record_ids=[record])
            else:
                bundle = export_bundle(jr, participant, head)
        text = json.dumps(bundle, indent=2, sort_keys=True)
        if out is None:
            typer.echo(text)
        else:
            out.write_text(text + "\n", encoding="utf-8")
