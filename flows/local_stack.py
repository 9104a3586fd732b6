"""A local Prefect stack: a server on 127.0.0.1 and one process worker per work pool.

`make prefect-up` / `make prefect-down` call this; the tests start and stop their stack with the same
functions. Every process is started in its own session and its PID written to <run_dir>/<name>.pid;
`down` stops exactly those processes (SIGTERM to the process group, SIGKILL if it lingers): background
workers ignore SIGINT, and a worker's running flow runs belong to its group.

    python -m flows.local_stack up [--port 4200] [--run-dir .prefect-run]
    python -m flows.local_stack down [--run-dir .prefect-run]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

POOLS = ("cpu", "gpu")
RUN_DIR = ".prefect-run"
SERVER_TIMEOUT_S = 180.0  # a first start migrates a fresh database: ~20 s on 2 cores, more when busy


def api_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/api"


def _prefect(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "prefect"), *args]


def _alive(pid: int) -> bool:
    try:
        # Reap it if it is our child (the tests), so that a dead process does not linger as a zombie.
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_prefect(pid: int) -> bool:
    """Guard against a stale PID file whose number now belongs to someone else's process."""
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not cmdline.exists():
        return _alive(pid)  # no /proc (macOS): trust the PID file
    return b"prefect" in cmdline.read_bytes()


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def spawn(name: str, cmd: Sequence[str], run_dir: Path, env: Mapping[str, str]) -> int:
    """Start `cmd` detached (own session), output to <name>.log, PID to <name>.pid."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / f"{name}.log", "ab") as log:
        proc = subprocess.Popen(
            list(cmd), env=dict(env), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    (run_dir / f"{name}.pid").write_text(f"{proc.pid}\n")
    return proc.pid


def wait_healthy(url: str, pid: int | None = None, timeout_s: float = SERVER_TIMEOUT_S) -> None:
    """Poll <api>/health until the server answers; fail early if its process died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if pid is not None and not _alive(pid):
            raise RuntimeError(f"the Prefect server (pid {pid}) exited before answering at {url}.")
        time.sleep(0.5)
    raise TimeoutError(f"no Prefect server answered at {url}/health within {timeout_s:.0f} s.")


def create_pools(url: str, pools: Sequence[str]) -> None:
    """Create the process work pools (no-op for those that exist)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: url}), get_client(sync_client=True) as client:
        for pool in pools:
            try:
                client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
            except ObjectAlreadyExists:
                continue


def up(
    run_dir: str | Path = RUN_DIR,
    port: int = 4200,
    pools: Sequence[str] = POOLS,
    env: Mapping[str, str] | None = None,
    worker_args: Sequence[str] = (),
) -> str:
    """Start the server (unless ours is already running) and a worker per pool; returns the API URL."""
    run_dir, url = Path(run_dir), api_url(port)
    env = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", **(env or os.environ)}
    pid = _read_pid(run_dir / "server.pid")
    if pid is None or not (_alive(pid) and _is_prefect(pid)):
        cmd = _prefect("server", "start", "--host", "127.0.0.1", "--port", str(port))
        pid = spawn("server", cmd, run_dir, {k: v for k, v in env.items() if k != "PREFECT_API_URL"})
    wait_healthy(url, pid)
    create_pools(url, pools)
    worker_env = {**env, "PREFECT_API_URL": url}
    for pool in pools:
        wpid = _read_pid(run_dir / f"worker-{pool}.pid")
        if wpid is None or not (_alive(wpid) and _is_prefect(wpid)):
            cmd = _prefect("worker", "start", "--pool", pool, "--type", "process", *worker_args)
            spawn(f"worker-{pool}", cmd, run_dir, worker_env)
    (run_dir / "env").write_text(f"export PREFECT_API_URL={url}\n")
    return url


def _stop(pid: int, grace_s: float = 20.0) -> None:
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)  # its own session: the group is exactly what it started
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if not _alive(pid):
                return
            time.sleep(0.2)


def down(run_dir: str | Path = RUN_DIR) -> list[str]:
    """Stop the processes `up` recorded (workers first); returns the names stopped."""
    run_dir, stopped = Path(run_dir), []
    for path in sorted(run_dir.glob("*.pid"), key=lambda p: p.name == "server.pid"):
        pid = _read_pid(path)
        if pid is not None and _alive(pid) and _is_prefect(pid):
            _stop(pid)
            stopped.append(path.stem)
        path.unlink(missing_ok=True)
    return stopped


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m flows.local_stack", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("--port", type=int, default=4200)
    parser.add_argument("--run-dir", default=RUN_DIR)
    args = parser.parse_args(argv)
    if args.action == "up":
        url = up(args.run_dir, args.port)
        ui = url.removesuffix("/api")
        print(f"Prefect UI: {ui}   workers: {', '.join(POOLS)}   logs and PIDs: {args.run_dir}/")
        print(f"Next: source {args.run_dir}/env && prefect --no-prompt deploy --all")
    else:
        stopped = down(args.run_dir)
        print(f"stopped: {', '.join(stopped) or 'nothing was running'}")


if __name__ == "__main__":
    main()
