"""Who is training a run folder: a lock per folder, so that two processes on one results tree (two batches, Ray
tasks) never train the same run twice, and what a killed process leaves behind is cleared: its temporary folders,
its lock files and its report's build folder."""

from __future__ import annotations

import atexit
import fcntl
import os
import shutil
import time
from pathlib import Path

# A run folder is claimed by a lock on `.<folder>.lock` (fcntl.flock) held by the process that trains it: the lock
# goes when the process does (even on kill -9), so a stale lock file never blocks; the file holds the holder's pid.
_HELD: dict[Path, tuple[int, list[Path]]] = {}  # run folder → (fd of its lock file, folders made for it)
# A lock whose file names no live process is taken by remove_stale_locks for an instant (to prove it stale): a
# claimer that meets it then tries again for up to this long before it takes the run for running elsewhere.
STALE_LOCK_RETRY_S = 0.5


def _lock_path(folder: Path) -> Path:
    return folder.with_name(f".{folder.name}.lock")


def lock_run_folder(folder: Path) -> str:
    """Claim `folder` for this process; → '' once held, else the pid of the live process that holds it. An OSError
    (a full disk, a read-only folder) leaves nothing behind: no lock file, none of the folders made for it."""
    if folder in _HELD:
        return ""
    made = [d for d in folder.parents if not d.exists()]  # removed again if the run leaves nothing in them
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        return _lock(folder, made)
    except OSError:
        remove_empty_folders(made)
        raise


def _lock(folder: Path, made: list[Path]) -> str:
    path = _lock_path(folder)
    give_up = time.monotonic() + STALE_LOCK_RETRY_S
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            if (holder.isdigit() and _alive(int(holder))) or time.monotonic() > give_up:
                return holder or "?"
            time.sleep(0.01)  # a claimer between its lock and its pid, or remove_stale_locks proving it stale
            continue
        except OSError:  # a filesystem without locks: go ahead unlocked (write_run still never mixes configs)
            os.close(fd)
            return ""
        try:
            current = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if current:  # else its holder removed it between our open and lock: lock the new one
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
    except OSError:
        path.unlink(missing_ok=True)  # while still locked, as release_run_folder does
        os.close(fd)
        raise
    _HELD[folder] = fd, made
    return ""


def remove_empty_folders(folders: list[Path]) -> None:
    """Deepest first; stops at the first that holds anything."""
    for d in folders:
        try:
            d.rmdir()
        except OSError:
            break


def release_run_folder(folder: Path | None = None) -> None:
    """Give up this process's claim on `folder` (on every folder when None); a run that failed leaves no folders."""
    for f in [Path(folder)] if folder is not None else list(_HELD):
        fd, made = _HELD.pop(f, (None, []))
        if fd is None:
            continue
        _lock_path(f).unlink(missing_ok=True)  # while still locked, so nobody locks a file about to vanish
        os.close(fd)
        remove_empty_folders(made)


atexit.register(release_run_folder)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(folder: Path, max_age_s: float = 86400) -> None:
    """Temporary and replaced copies of `folder` (`.seed0.tmp-<pid>-<ns>`, `.seed0.old-<pid>-<ns>`) left by a
    writer that was killed: removed when that process is gone, or when older than max_age_s."""
    for p in [*folder.parent.glob(f".{folder.name}.tmp-*"), *folder.parent.glob(f".{folder.name}.old-*")]:
        _remove_if_stale(p, p.name.rsplit(".", 1)[-1].split("-")[1], max_age_s)


def report_temp_prefix() -> str:
    """The prefix of a report's build folder (`.report-<pid>-<random>`): its pid tells remove_stale_report_temps
    whether its builder still runs."""
    return f".report-{os.getpid()}-"


def remove_stale_report_temps(out: Path, max_age_s: float = 86400) -> None:
    """Report build folders in `out` left by a killed builder: removed when that process is gone, or when older
    than max_age_s (one from before the pid was in the name counts as gone)."""
    for p in out.glob(".report-*"):
        _remove_if_stale(p, p.name.split("-")[1], max_age_s)


def _remove_if_stale(path: Path, pid: str, max_age_s: float) -> None:
    try:
        stale = not (pid.isdigit() and _alive(int(pid))) or time.time() - path.stat().st_mtime > max_age_s
    except OSError:
        return
    if stale:
        shutil.rmtree(path, ignore_errors=True)


def remove_stale_locks(directory: Path) -> None:
    """Lock files in `directory` (`.seed3.lock`: empty, or a pid) that no process holds, left by a killed holder.

    Only what is provably stale goes: a file naming a live process is left alone (even an instant's lock would
    make its claimer skip the run); any other is removed only while this process holds its flock, and only if it is
    still the file at that path, as release_run_folder removes its own, so a claimer that opened it meanwhile finds
    it replaced and locks a new one (lock_run_folder)."""
    for path in directory.glob(".*.lock"):
        if path.with_name(path.name[1:-len(".lock")]) in _HELD:
            continue
        try:
            holder = path.read_text(errors="replace").strip()
            fd = os.open(path, os.O_RDWR)
        except OSError:
            continue
        try:
            if holder.isdigit() and _alive(int(holder)):
                continue
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held: not stale (OSError: no locks here, leave it)
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                path.unlink()
        except OSError:
            continue
        finally:
            os.close(fd)
