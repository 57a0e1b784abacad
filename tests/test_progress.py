"""Progress bars: shown on a terminal (epoch bars and one batch-level bar), absent from redirected output."""

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

from benchmark.config import parse_config
from benchmark.harness.run import run
from tests.conftest import tiny_args

REPO = Path(__file__).resolve().parent.parent


def test_no_bars_when_stderr_is_not_a_terminal(tiny, capfd):
    run(parse_config(tiny("--strategy", "naive"))[0])
    err = capfd.readouterr().err
    assert "\r" not in err and "batch/s" not in err
    assert "experience 2 trained" in err  # the one-line progress report is still there


def test_bars_on_a_terminal(tmp_path, fmnist_root):
    """A real pseudo-terminal, as a user at a shell sees it: `hatswap batch` draws its bars."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))  # a terminal 160 columns wide
    args = tiny_args(tmp_path / "results", fmnist_root)[2:]
    proc = subprocess.Popen([sys.executable, "-m", "benchmark", "batch", "--profile", "smoke", "--strategies",
                             "naive,lwf", "--seeds", "0", *args], cwd=REPO, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=follower)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait(timeout=300) == 0
    out = b"".join(chunks).decode(errors="replace")
    assert "batch smoke" in out and "2/2" in out  # the batch-level bar reached the end
    assert "exp 0 epoch 1/3" in out and "exp 2 epoch 3/3" in out  # per-epoch bars
    assert "[batch 2/2] binary_tasks/lwf/seed0: done" in out
