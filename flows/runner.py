"""Run a command and stream its output line by line (no Prefect here: the tasks pass a logger callback).

Why not `subprocess.run`: a stage can run for hours, and its output must reach the Prefect logs while it
runs, not when it ends. Why our own timeout: Prefect's timeout for sync tasks cannot interrupt a thread
blocked on a pipe read, and would leave the stage's process running; here the deadline kills the
stage's whole process group.
"""

from __future__ import annotations

import codecs
import collections
import dataclasses
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

TAIL_LINES = 40  # kept for the error message of a failed command
PROGRESS_EVERY_S = 10.0  # progress bars redraw with '\r': log one redraw per interval, not each


@dataclasses.dataclass(frozen=True)
class CommandResult:
    returncode: int
    tail: tuple[str, ...]
    seconds: float

    @property
    def output(self) -> str:
        return "\n".join(self.tail)


class CommandTimeout(TimeoutError):
    def __init__(self, cmd: Sequence[str], timeout_s: float, tail: Sequence[str]) -> None:
        super().__init__(f"`{' '.join(cmd)}` ran past its {timeout_s:.0f} s timeout and was stopped.")
        self.tail = tuple(tail)


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment, with this interpreter's bin first on PATH: `python -m pipeline.x` in dvc.yaml must
    run on the interpreter that has the project installed, whoever started us (a worker, make, pytest)."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.setdefault("DVC_NO_ANALYTICS", "1")
    env.setdefault("TQDM_MININTERVAL", "5")  # tqdm reads TQDM_* defaults: fewer redraws to filter
    env.update(extra or {})
    return env


class _LineSplitter:
    """Bytes in, lines out. A segment ended by '\r' is a progress redraw: only the latest is kept and it is
    emitted at most every `progress_every_s` (and once more when its line ends)."""

    def __init__(self, emit: Callable[[str], None], progress_every_s: float) -> None:
        self._emit, self._every = emit, progress_every_s
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buf = ""
        self._last_progress = float("-inf")

    def feed(self, data: bytes) -> None:
        self._buf += self._decoder.decode(data)
        while True:
            cut = min((i for i in (self._buf.find("\n"), self._buf.find("\r")) if i >= 0), default=-1)
            if cut < 0:
                return
            segment, sep, self._buf = self._buf[:cut], self._buf[cut], self._buf[cut + 1 :]
            if sep == "\n":
                self._line(segment)
            elif segment.strip() and time.monotonic() - self._last_progress >= self._every:
                self._last_progress = time.monotonic()
                self._line(segment)

    def close(self) -> None:
        self._buf += self._decoder.decode(b"", final=True)
        if self._buf:
            self._line(self._buf)
            self._buf = ""

    def _line(self, text: str) -> None:
        if text.strip():
            self._emit(text.rstrip())


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the command's process group (the stage under dvc too), SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def stream_command(
    cmd: Sequence[str],
    cwd: str | Path,
    log: Callable[[str], None],
    env: Mapping[str, str] | None = None,
    timeout_s: float | None = None,
    progress_every_s: float = PROGRESS_EVERY_S,
) -> CommandResult:
    """Run `cmd` in `cwd`, passing each output line (stdout and stderr merged) to `log` as it comes.

    Raises CommandTimeout (after stopping the process group) when it runs past `timeout_s`.
    """
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)

    def emit(line: str) -> None:
        tail.append(line)
        log(line)

    start = time.monotonic()
    deadline = None if timeout_s is None else start + timeout_s
    splitter = _LineSplitter(emit, progress_every_s)
    # A new session: the command and everything it starts form one group that a timeout can stop.
    proc = subprocess.Popen(
        list(cmd), cwd=cwd, env=dict(env or child_env()), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            while True:
                if deadline is not None and time.monotonic() >= deadline:
                    _kill_group(proc)
                    splitter.close()
                    raise CommandTimeout(cmd, timeout_s or 0.0, tail)
                if not sel.select(1.0):
                    # A background child may hold the pipe open after the command itself has ended.
                    if proc.poll() is not None:
                        break
                    continue
                data = os.read(proc.stdout.fileno(), 65536)
                if not data:
                    break
                splitter.feed(data)
        splitter.close()
        returncode = proc.wait()
    finally:
        # Also on KeyboardInterrupt or a cancelled flow run: never leave a stage running behind us.
        _kill_group(proc)
        proc.stdout.close()
    return CommandResult(returncode, tuple(tail), time.monotonic() - start)
