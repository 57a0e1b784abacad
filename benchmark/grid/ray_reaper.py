"""An embedded Ray that ends with its batch, even when the batch is killed with SIGKILL.

Ray gives the processes it starts itself (gcs_server, raylet, the monitors) PR_SET_PDEATHSIG, so they die with the
batch; but the raylet's own children, ray::DashboardAgent and ray::RuntimeEnvAgent, do not: after a kill -9 of the
batch they live on, adopted by init (measured with Ray 2.60 on Linux: still running 40 s later, and 5 s after a
SIGTERM). Ray's own reaper, which would kill them, is only started where PR_SET_PDEATHSIG does not exist.

So the batch starts its Ray in a folder of its own (ray.init's _temp_dir: Ray's sessions, sockets and logs), and
first starts this module as a watchdog that holds the read end of a pipe from the batch. The pipe closes when the
batch ends, however it ends (the kernel closes a dead process's files); the watchdog then kills every process that
has a file open in that folder or names it on its command line (every process of that Ray session: each writes its
logs there, and nothing else does), removes the folder, and exits. The folder, not an environment variable, marks
the session's processes: Ray renames its agents with setproctitle, which blanks their /proc/PID/environ. The watchdog
runs in its own session, so a signal to the batch's process group does not reach it. Linux only (it reads /proc);
elsewhere nothing is started and Ray's own temporary folder is used.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path


def start_reaper() -> tuple[str | None, Callable[[], None]]:
    """→ (the folder to start Ray in, or None where there is no /proc; the function that ends the watchdog, to call
    after ray.shutdown: what Ray left behind is killed then too, and the folder removed)."""
    if not Path("/proc/self/fd").is_dir():
        return None, lambda: None
    # where Ray itself would put its folder on Linux: a socket's path in it must stay under 108 bytes
    root = os.environ.get("RAY_TMPDIR") or os.environ.get("TMPDIR") or "/tmp"
    folder = tempfile.mkdtemp(prefix="hatswap-ray-", dir=root)
    read_end, write_end = os.pipe()  # not inheritable: the batch alone holds the write end
    # this very file, isolated (-I): benchmark/, whose modules could shadow the standard library's, stays off sys.path
    watchdog = subprocess.Popen([sys.executable, "-I", __file__, folder, str(os.getpid())], stdin=read_end,
                                stdout=subprocess.DEVNULL, start_new_session=True)
    os.close(read_end)

    def stop() -> None:
        os.close(write_end)
        watchdog.wait()

    return folder, stop


def processes_using(folder: str) -> list[int]:
    """The processes with a file open under `folder` or `folder` on their command line (not a zombie: it has
    neither)."""
    prefix, found = folder.rstrip("/") + "/", []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if prefix.encode() in (proc / "cmdline").read_bytes() or any(
                    path.startswith(prefix) for path in _open_files(proc)):
                found.append(int(proc.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def _open_files(proc: Path) -> Iterator[str]:
    for fd in (proc / "fd").iterdir():
        try:
            yield os.readlink(fd)
        except OSError:  # closed meanwhile
            continue


def reap(folder: str, spare: set[int]) -> None:
    """SIGKILL every process using `folder` but those in `spare`, until none is left (a dying raylet may still
    start one) or 5 s have passed; then remove the folder."""
    deadline = time.monotonic() + 5
    while (pids := set(processes_using(folder)) - spare) and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.1)
    shutil.rmtree(folder, ignore_errors=True)


def main(folder: str, batch_pid: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the batch's to handle; the pipe tells us the end
    while sys.stdin.buffer.read(4096):
        pass
    reap(folder, spare={os.getpid(), batch_pid})  # the batch, when it closed the pipe itself, lives on


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
