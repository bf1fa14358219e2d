"""The export folder on disk: recognise an autoclf export, build a new one beside it, swap it in.

`best --export DIR` replaces DIR, so two promises rest on this module: it never deletes anything
autoclf did not write, and an interrupted export leaves DIR whole, the old export or the new one.

Recognising an export. Every export ends with `autoclf_export.json` (`MARKER_FILE`), written
last: a version and the size and content hash of every file the export wrote. The version is the
export marker's (automl_clf/versions.py): an older marker is read through its migrations, a newer
one refuses the folder, saying to upgrade autoclf. DIR is replaced
only when it is missing, an empty folder, or holds those files unchanged and nothing else; a
folder with any other file, a changed file, a link, or no marker is refused and left untouched
(a file named `model.json` proves nothing: anyone can write one). DIR itself may not be a link
(links in the folders above it are followed), nor lie inside the data folder.

Replacing it. The new export is written in a staging folder beside DIR,
`.<DIR>.partial-<host>-<pid>`, and exchanged with DIR in one step (Linux `renameat2` with
`RENAME_EXCHANGE`): at every instant DIR is the whole old export or the whole new one. The
staging name then holds the old export, which is removed. Where the exchange is not available
(another OS, some network file systems) DIR is first renamed aside to
`.<DIR>.replaced-<host>-<pid>`; an export killed between that and moving the new one in is
undone by the next export to DIR, which moves the old one back before anything else.

File modes. Every file of an export is 0666 and every folder 0777 less the umask (0644 and
0755 usually), like any file the user writes, whatever mode its writer chose (safetensors writes
0600): an export is meant to be copied and loaded elsewhere, often as another user.

Cleaning up. Staging and set-aside folders are named by their writer's host and pid, so the
next export to the same DIR removes those whose writer is gone (this host, a pid no longer
running) and leaves alone those of running exports and of other hosts.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from automl_clf.data.cache import content_hash
from automl_clf.errors import ExportError
from automl_clf.outputs import check_outside
from automl_clf.versions import EXPORT_MARKER, UPGRADE, __version__

MARKER_FILE = "autoclf_export.json"
STAGING, REPLACED = "partial", "replaced"  # the kinds of sibling folder an export makes
_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100
N_LISTED = 5  # foreign files named in a refusal, at most


class FileRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    size: int  # bytes
    blake2b: str  # data/cache.py `content_hash`


class ExportMarker(BaseModel):
    """`autoclf_export.json`: what autoclf wrote into an export folder, and nothing else."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    autoclf_export: int  # its version: EXPORT_MARKER's (automl_clf/versions.py)
    files: dict[str, FileRecord]  # path relative to the export, with / -> its record


def export_folder(out_dir: Path) -> Path:
    """`out_dir` made absolute, links in the folders above it followed; a link at `out_dir`
    itself is refused: the swap would replace the link, not the folder it points to, and a link
    may lead anywhere (into the data, onto another export).

    Raises:
        ExportError: `out_dir` is a link, naming its target and what to give instead.
    """
    if out_dir.is_symlink():
        target = out_dir.resolve()
        raise ExportError(
            f"{out_dir} is a link (to {target}): an export is never written through a link; "
            f"give the folder itself (--export {target}) or a new one"
        )
    return out_dir.resolve()


def check_export_folder(out_dir: Path, data_root: Path | None) -> Path:
    """Everything that refuses `out_dir` as an export folder, checked before any work (a
    refusal after the search or retrain would waste it): a link, a folder inside the data
    folder `data_root` (the next run would read the export's report as a class), a folder that
    is not an unchanged export. Returns `out_dir` as `export_folder` makes it.

    Raises:
        ExportError: a link, or a folder `check_replaceable` refuses.
        OutputError: `out_dir` is inside `data_root`.
    """
    out = export_folder(out_dir)
    example = f"--export {Path('exports') / out.name}"
    check_outside(out_dir, "--export", data=data_root, example=example)
    check_replaceable(out)
    return out


def check_replaceable(out_dir: Path) -> None:
    """Raise ExportError unless `out_dir` is missing, an empty folder, or an unchanged export.

    Called before the retrain (so a refusal costs nothing) and again just before the swap.
    """
    if not out_dir.exists() and not out_dir.is_symlink():
        return
    fix = "choose a new or empty folder for --export"
    if out_dir.is_symlink() or not out_dir.is_dir():
        raise ExportError(f"{out_dir} exists and is not a folder; {fix}")
    if not any(out_dir.iterdir()):
        return
    marker = _read_marker(out_dir)
    if marker is None:
        old = (out_dir / "model.json").is_file()
        hint = " (an export written before autoclf marked its exports has none)" if old else ""
        raise ExportError(
            f"{out_dir} is not an autoclf export: it has no valid {MARKER_FILE}{hint}, so it is "
            f"left untouched; {fix}"
        )
    foreign: list[str] = []  # relative paths; a folder ends with /
    changed: list[str] = []
    for path in sorted(out_dir.rglob("*")):  # links are listed, not followed
        rel = path.relative_to(out_dir).as_posix()
        record = marker.files.get(rel)
        if any(rel.startswith(name) for name in foreign if name.endswith("/")):
            continue  # inside a folder already named
        if path.is_symlink():
            foreign.append(rel)
        elif path.is_dir():
            if not any(name.startswith(rel + "/") for name in marker.files):
                foreign.append(rel + "/")
        elif rel == MARKER_FILE:
            continue
        elif record is None or not path.is_file():
            foreign.append(rel)
        elif path.stat().st_size != record.size or content_hash(path) != record.blake2b:
            changed.append(rel)
    if foreign:
        raise ExportError(
            f"{out_dir} holds what no autoclf export holds ({_some(foreign)}), so it is left "
            f"untouched; move that out of it, or {fix}"
        )
    if changed:
        raise ExportError(
            f"{out_dir} is an autoclf export whose files changed since it was written "
            f"({_some(changed)}), so it is left untouched; move them out of it, or {fix}"
        )


def _some(names: list[str]) -> str:
    return ", ".join(names[:N_LISTED]) + (", …" if len(names) > N_LISTED else "")


@contextlib.contextmanager
def staged_export(out_dir: Path) -> Iterator[Path]:
    """A staging folder to write the export into; on leaving, it replaces `out_dir`.

    An exception inside removes the staging folder and leaves `out_dir` as it was.
    """
    out_dir = export_folder(out_dir)
    recover_interrupted(out_dir)
    remove_stale(out_dir)
    check_replaceable(out_dir)
    staging = sibling(out_dir, STAGING, os.getpid())
    shutil.rmtree(staging, ignore_errors=True)  # left by an earlier process with this pid
    staging.mkdir(parents=True)
    try:
        yield staging
        _share(staging)
        _write_marker(staging)
        check_replaceable(out_dir)  # it may have changed while the export was written
        _swap(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # the unfinished export, or the old one


def _share(folder: Path) -> None:
    """Give every file of the export the mode a plain file gets (0644, folders 0755, under the
    usual umask 022), so an export copied to a server that runs as another user can be loaded.
    Writers that go through a temporary file (safetensors, `tempfile`) leave 0600 behind."""
    mask = _umask()
    folder.chmod(0o777 & ~mask)
    for path in folder.rglob("*"):
        if path.is_symlink():
            continue
        path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)


def _umask() -> int:
    """This process's umask (Linux reads it from /proc: setting it to read it back races with
    other threads creating files)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def sibling(out_dir: Path, kind: str, pid: int) -> Path:
    """The folder beside `out_dir` of one writer: `.<name>.<kind>-<host>-<pid>`."""
    return out_dir.parent / f".{out_dir.name}.{kind}-{_host()}-{pid}"


def recover_interrupted(out_dir: Path) -> None:
    """Move back an old export set aside by an export that died before moving its new one in
    (the fallback swap without an atomic exchange), so DIR is never left missing."""
    if out_dir.exists():
        return
    for aside in _stale(out_dir, REPLACED):
        aside.rename(out_dir)
        return


def remove_stale(out_dir: Path) -> None:
    """Remove the staging and set-aside folders of `out_dir` whose writer is gone."""
    for kind in (STAGING, REPLACED):
        for folder in _stale(out_dir, kind):
            shutil.rmtree(folder, ignore_errors=True)


def _stale(out_dir: Path, kind: str) -> list[Path]:
    """Folders beside `out_dir` named by an export of this host whose process is not running."""
    prefix = f".{out_dir.name}.{kind}-{_host()}-"
    found = []
    with contextlib.suppress(OSError):
        for path in out_dir.parent.iterdir():
            pid = path.name.removeprefix(prefix)
            ours = path.name.startswith(prefix) and pid.isdigit()
            if ours and path.is_dir() and not path.is_symlink() and not _running(int(pid)):
                found.append(path)
    return sorted(found)


def _running(pid: int) -> bool:
    """Whether a process with this pid runs on this host (elsewhere than POSIX: assume so)."""
    if os.name != "posix":
        return True
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _host() -> str:
    return "".join(c if c.isalnum() or c == "." else "_" for c in socket.gethostname())


def _read_marker(folder: Path) -> ExportMarker | None:
    """The folder's marker, of this version or an older one (migrated); None when it has none
    that is valid.

    Raises:
        ExportError: the marker is of a newer version: a newer autoclf wrote the export, and
            this one cannot tell what belongs to it.
    """
    path = folder / MARKER_FILE
    if path.is_symlink() or not path.is_file():
        return None
    try:
        raw = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(raw, dict):
        return None
    stored = raw.get("autoclf_export")
    if isinstance(stored, int) and stored > EXPORT_MARKER.version:
        raise ExportError(
            f"{folder} is an export of a newer autoclf ({MARKER_FILE} version {stored}; this "
            f"autoclf, {__version__}, reads {EXPORT_MARKER.reads()}), so it is left untouched; "
            f"{UPGRADE}, or choose a new or empty folder for --export"
        )
    try:
        return ExportMarker.model_validate(EXPORT_MARKER.upgrade(raw, stored, str(path)))
    except (ExportError, ValidationError):
        return None


def _write_marker(folder: Path) -> None:
    files = {
        path.relative_to(folder).as_posix(): FileRecord(
            size=path.stat().st_size, blake2b=content_hash(path)
        )
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not path.is_symlink()
    }
    marker = ExportMarker(autoclf_export=EXPORT_MARKER.version, files=files)
    (folder / MARKER_FILE).write_text(marker.model_dump_json(indent=2) + "\n")


def _swap(staging: Path, out_dir: Path) -> None:
    """Put `staging` at `out_dir`; the old `out_dir`, if any, ends up at `staging`."""
    try:
        if not out_dir.exists():
            staging.rename(out_dir)  # atomic; onto an empty folder made meanwhile too
            return
        if _exchange(staging, out_dir):
            return
        aside = sibling(out_dir, REPLACED, os.getpid())
        out_dir.rename(aside)
        try:
            staging.rename(out_dir)
        except OSError:
            aside.rename(out_dir)
            raise
        aside.rename(staging)  # removed with the staging folder
    except OSError as exc:
        raise ExportError(
            f"cannot move the new export into {out_dir}: {exc.strerror or exc}; the folder "
            "there is unchanged"
        ) from None


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2); False where this system cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))
