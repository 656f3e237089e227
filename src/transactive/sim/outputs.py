"""Output directories that never lose what the program did not write.

A program output (``simulate --out DIR``, ``--report DIR``) is a directory the program owns:
it holds a marker file, ``.transactive-output``, a small JSON document naming the program,
its version and every file it wrote there. The rules:

* :func:`check_output_dir` runs *before* the work starts and refuses (InvalidInputError,
  exit code 2) a path that exists and is not a directory, a non-empty directory that is not
  a previous output (or holds files its marker does not list), the current directory or one
  of its parents, and a place where nothing can be created (it actually creates and removes
  a directory there) — so an unusable path costs seconds, not a whole run.
* :func:`write_output_dir` lets a writer fill a fresh directory next to the target and only
  then puts it in place of the target, removing just the files the old marker lists. On
  failure the fresh directory is removed and the target is untouched.

Only the standard library is imported here, so the checks are fast.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path

from transactive import __version__
from transactive.errors import InvalidInputError

MARKER = ".transactive-output"
_PROGRAM = "transactive"


class OutputDirError(InvalidInputError):
    """An output path that cannot be used (or replaced) without losing someone's files."""


def check_output_dir(path: str | Path) -> None:
    """Raise OutputDirError unless ``path`` can become (or be replaced by) a program output.

    Accepted: a path that does not exist (its parents are created when writing), an empty
    directory, or a previous output whose files are all listed in its marker. The nearest
    existing ancestor must allow creating a directory (tried, then removed).
    """
    target = Path(path)
    _check_place(target)
    if target.is_symlink() or target.exists():
        _check_replaceable(target)
    _check_writable(_existing_ancestor(target.parent if target.name else target), target)


def write_output_dir(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Run ``write(directory)`` on a fresh directory next to ``path``, then put it in place.

    The finished directory gets a marker listing exactly the files ``write`` created. A
    previous output at ``path`` is replaced: only the files its marker lists are removed, and
    if anything else appeared there meanwhile nothing is removed and OutputDirError is
    raised. If ``write`` fails, the fresh directory is removed, ``path`` is untouched and the
    exception propagates. Returns ``path``.
    """
    target = Path(path)
    check_output_dir(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fresh = _new_dir(target.parent, f".{target.name}.new-")
    try:
        write(fresh)
        files = sorted(_files(fresh) - {MARKER})
        marker = {"written_by": _PROGRAM, "version": __version__, "files": files}
        (fresh / MARKER).write_text(json.dumps(marker, indent=1) + "\n", encoding="utf-8")
        _replace(target, fresh)
    except BaseException:
        shutil.rmtree(fresh, ignore_errors=True)
        raise
    return target


def check_output_file(path: str | Path) -> None:
    """Raise OutputDirError unless a single output file can be written at ``path``: not a
    directory or a special file, in an existing directory where files can be created (a
    file is created and removed there). An existing regular file is overwritten."""
    target = Path(path)
    if target.is_dir() or (target.exists() and not target.is_file()):
        raise OutputDirError(f"{target}: exists and is not a regular file; give a file name")
    parent = Path(os.path.abspath(target)).parent
    if not parent.is_dir():
        raise OutputDirError(f"{target}: the directory {parent} does not exist")
    probe = parent / f".transactive-probe-{secrets.token_hex(4)}"
    try:
        probe.touch(exist_ok=False)
        probe.unlink()
    except OSError as exc:
        raise OutputDirError(
            f"{target}: cannot write there ({exc.strerror or exc} in {parent})"
        ) from None


def read_marker(path: str | Path) -> list[str] | None:
    """The files a previous output at ``path`` lists in its marker; None if ``path`` has no
    marker. A marker that is not ours (unreadable, not our JSON) raises OutputDirError."""
    marker = Path(path) / MARKER
    if not (marker.is_file() and not marker.is_symlink()):
        return None
    try:
        doc = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OutputDirError(f"{path}: its {MARKER} marker cannot be read ({exc})") from None
    files = doc.get("files") if isinstance(doc, dict) else None
    if (
        not isinstance(doc, dict)
        or doc.get("written_by") != _PROGRAM
        or not isinstance(files, list)
        or not all(isinstance(f, str) for f in files)
    ):
        raise OutputDirError(f"{path}: its {MARKER} marker was not written by {_PROGRAM}")
    return list(files)


# --- checks ---------------------------------------------------------------------------------


def _check_place(target: Path) -> None:
    """Refuse the working directory, its parents and the file-system root."""
    here = Path.cwd().resolve()
    where = target.resolve()
    if where == here or where in here.parents:
        raise OutputDirError(
            f"{target}: is the current directory"
            + ("" if where == here else " or one of its parents")
            + "; choose a new directory for the results, e.g. out/<name>"
        )


def _check_replaceable(target: Path) -> None:
    """An existing path: an empty directory or a previous output with nothing foreign."""
    if target.is_symlink() or not target.is_dir():
        raise OutputDirError(
            f"{target}: exists and is not a directory; choose another output path "
            "(nothing was written)"
        )
    present = _files(target)
    if not present and not any(target.iterdir()):
        return
    listed = read_marker(target)
    if listed is None:
        raise OutputDirError(
            f"{target}: is not empty and is not a previous transactive output (no {MARKER} "
            "marker); choose a new or empty directory — nothing in it was touched"
        )
    foreign = sorted(present - set(listed) - {MARKER})
    if foreign:
        shown = ", ".join(foreign[:5]) + (
            f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        )
        raise OutputDirError(
            f"{target}: holds files transactive did not write ({shown}); move them away or "
            "choose another directory — nothing in it was touched"
        )
    for d in [target, *_dirs(target)]:
        if not os.access(d, os.W_OK | os.X_OK):
            raise OutputDirError(f"{d}: not writable, so the previous output cannot be replaced")


def _existing_ancestor(p: Path) -> Path:
    """``p`` or its nearest ancestor that exists."""
    p = Path(os.path.abspath(p))
    while not p.exists():
        p = p.parent
    return p


def _check_writable(place: Path, target: Path) -> None:
    """Create and remove a directory in ``place`` (where ``target`` will be made)."""
    if not place.is_dir():
        raise OutputDirError(f"{target}: cannot be created: {place} is not a directory")
    try:
        probe = _new_dir(place, ".transactive-probe-")
        probe.rmdir()
    except OSError as exc:
        raise OutputDirError(
            f"{target}: cannot write there ({exc.strerror or exc} in {place}); choose a "
            "writable location"
        ) from None


# --- writing --------------------------------------------------------------------------------


def _new_dir(parent: Path, prefix: str) -> Path:
    """A new directory with a random name and the usual permissions (umask applies)."""
    for _ in range(100):
        candidate = parent / f"{prefix}{secrets.token_hex(4)}"
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"cannot find a free temporary name in {parent}")


def _replace(target: Path, fresh: Path) -> None:
    """Put ``fresh`` at ``target``; a previous output there is moved aside, then only its
    listed files (and the directories they leave empty) are removed."""
    if not (target.is_symlink() or target.exists()):
        fresh.rename(target)
        return
    _check_replaceable(target)  # again: something may have appeared during the run
    listed = read_marker(target)
    if listed is None:  # an empty directory
        target.rmdir()  # fails (and keeps everything) if a file appeared meanwhile
        fresh.rename(target)
        return
    old = _new_dir(target.parent, f".{target.name}.old-")
    target.rename(old)  # onto the new empty directory: POSIX rename replaces it
    try:
        fresh.rename(target)
    except BaseException:
        old.rename(target)
        raise
    present = _files(old)
    for name in sorted(present & (set(listed) | {MARKER})):
        (old / name).unlink()
    for d in sorted(_dirs(old), key=lambda p: len(p.parts), reverse=True):
        if not any(d.iterdir()):
            d.rmdir()
    if any(old.iterdir()):
        raise OutputDirError(
            f"{target}: new results are in place, but files that appeared in the previous "
            f"output during the run were kept in {old}"
        )
    old.rmdir()


def _files(root: Path) -> set[str]:
    """Every non-directory entry under ``root`` (symlinks included, not followed), as
    POSIX paths relative to ``root``."""
    out: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        links = [d for d in dirnames if (base / d).is_symlink()]
        for name in [*filenames, *links]:
            out.add((base / name).relative_to(root).as_posix())
    return out


def _dirs(root: Path) -> list[Path]:
    """Every real directory below ``root`` (not ``root`` itself, symlinks not followed)."""
    return [
        Path(dirpath) / d
        for dirpath, dirnames, _ in os.walk(root)
        for d in dirnames
        if not (Path(dirpath) / d).is_symlink()
    ]
