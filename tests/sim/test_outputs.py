"""Output directories: never delete what the program did not write; check before the run."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from transactive.errors import InvalidInputError
from transactive.sim.outputs import (
    MARKER,
    OutputDirError,
    check_output_dir,
    check_output_file,
    read_marker,
    write_output_dir,
)


def tables(names: tuple[str, ...] = ("a.csv", "sub/b.csv")) -> Callable[[Path], None]:
    """A writer creating ``names`` (relative paths) with some content."""

    def write(d: Path) -> None:
        for n in names:
            (d / n).parent.mkdir(parents=True, exist_ok=True)
            (d / n).write_text(n)

    return write


def unwritable(tmp_path: Path) -> Path:
    """A directory in which nothing can be created (for root, who ignores permissions: a
    read-only kernel file system)."""
    if os.geteuid() == 0:
        return Path("/sys")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    return ro


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_a_new_output_lists_exactly_its_files(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "out"
    assert write_output_dir(target, tables()) == target
    assert (target / "sub" / "b.csv").read_text() == "sub/b.csv"
    doc = json.loads((target / MARKER).read_text())
    assert doc["written_by"] == "transactive" and doc["files"] == ["a.csv", "sub/b.csv"]
    assert read_marker(target) == ["a.csv", "sub/b.csv"]
    assert leftovers(target.parent) == []


def test_the_output_has_the_usual_permissions(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    os.umask(umask)
    write_output_dir(tmp_path / "out", tables())
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o777 & ~umask


def test_a_previous_output_is_replaced(tmp_path: Path) -> None:
    target = tmp_path / "out"
    write_output_dir(target, tables(("old.csv", "sub/old.csv")))
    check_output_dir(target)  # a previous output is fine
    write_output_dir(target, tables(("new.csv",)))
    assert sorted(p.name for p in target.iterdir()) == [MARKER, "new.csv"]
    assert read_marker(target) == ["new.csv"] and leftovers(tmp_path) == []


def test_an_empty_directory_is_used(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    write_output_dir(tmp_path / "out", tables())
    assert (tmp_path / "out" / "a.csv").is_file()


@pytest.mark.parametrize("user_file", ["notes.txt", "sub/notes.txt"])
def test_a_directory_with_user_files_is_refused_and_kept(tmp_path: Path, user_file: str) -> None:
    target = tmp_path / "examples"
    if user_file.startswith("sub/"):
        write_output_dir(target, tables())  # ours, then a user file
    (target / user_file).parent.mkdir(parents=True, exist_ok=True)
    (target / user_file).write_text("mine")
    with pytest.raises(OutputDirError, match="nothing in it was touched") as err:
        check_output_dir(target)
    assert isinstance(err.value, InvalidInputError)
    with pytest.raises(OutputDirError):
        write_output_dir(target, tables())
    assert (target / user_file).read_text() == "mine" and leftovers(tmp_path) == []


def test_a_file_is_not_an_output_directory(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputDirError, match="not a directory"):
        check_output_dir(tmp_path / "f")
    with pytest.raises(OutputDirError, match="is not a directory"):
        check_output_dir(tmp_path / "f" / "out")
    assert (tmp_path / "f").read_text() == "x"


def test_the_working_directory_and_its_parents_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for path in (".", "", "..", str(work), "/"):
        with pytest.raises(OutputDirError, match="current directory"):
            check_output_dir(Path(path))


def test_an_unwritable_place_is_found_before_writing(tmp_path: Path) -> None:
    place = unwritable(tmp_path)
    with pytest.raises(OutputDirError, match="cannot write there"):
        check_output_dir(place / "out" / "deeper")
    calls: list[Path] = []
    with pytest.raises(OutputDirError):
        write_output_dir(place / "out", calls.append)
    assert calls == []  # the writer never ran


def test_a_failed_write_leaves_the_previous_output(tmp_path: Path) -> None:
    target = tmp_path / "out"
    write_output_dir(target, tables(("old.csv",)))

    def broken(d: Path) -> None:
        (d / "half.csv").write_text("…")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_output_dir(target, broken)
    assert read_marker(target) == ["old.csv"] and (target / "old.csv").is_file()
    assert not (target / "half.csv").exists() and leftovers(tmp_path) == []
    with pytest.raises(RuntimeError):
        write_output_dir(tmp_path / "new", broken)
    assert not (tmp_path / "new").exists() and leftovers(tmp_path) == []


def test_a_user_file_appearing_during_the_run_stops_the_replacement(tmp_path: Path) -> None:
    target = tmp_path / "out"
    write_output_dir(target, tables(("old.csv",)))

    def meanwhile(d: Path) -> None:
        (d / "new.csv").write_text("new")
        (target / "mine.txt").write_text("mine")  # the user saves a file there mid-run

    with pytest.raises(OutputDirError, match=r"mine\.txt"):
        write_output_dir(target, meanwhile)
    assert (target / "mine.txt").read_text() == "mine" and (target / "old.csv").is_file()
    assert leftovers(tmp_path) == []


def test_a_tampered_marker_cannot_delete_outside(tmp_path: Path) -> None:
    target = tmp_path / "out"
    write_output_dir(target, tables(("a.csv",)))
    (tmp_path / "precious").write_text("keep")
    doc = json.loads((target / MARKER).read_text())
    doc["files"] += ["../precious", str(tmp_path / "precious")]
    (target / MARKER).write_text(json.dumps(doc))
    write_output_dir(target, tables(("b.csv",)))
    assert (tmp_path / "precious").read_text() == "keep"
    assert sorted(p.name for p in target.iterdir()) == [MARKER, "b.csv"]


@pytest.mark.parametrize("marker", ["not json", '{"written_by": "someone", "files": []}', "[]"])
def test_a_marker_that_is_not_ours_is_refused(tmp_path: Path, marker: str) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / MARKER).write_text(marker)
    with pytest.raises(OutputDirError, match="marker"):
        check_output_dir(tmp_path / "out")
    assert (tmp_path / "out" / MARKER).read_text() == marker


def test_output_files(tmp_path: Path) -> None:
    check_output_file(tmp_path / "hc.csv")
    (tmp_path / "hc.csv").write_text("old")
    check_output_file(tmp_path / "hc.csv")  # an explicitly named file may be overwritten
    with pytest.raises(OutputDirError, match="not a regular file"):
        check_output_file(tmp_path)
    with pytest.raises(OutputDirError, match="does not exist"):
        check_output_file(tmp_path / "nope" / "hc.csv")
    with pytest.raises(OutputDirError, match="cannot write there"):
        check_output_file(unwritable(tmp_path) / "hc.csv")
    assert leftovers(tmp_path) == []
