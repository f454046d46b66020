"""Throwaway servers on 127.0.0.1 for the tests: MLflow's tracking server and PostgreSQL.

Each is started in a temporary folder on a free port, waited for until it answers, and stopped (its whole
process group) afterwards. A missing program skips the test that needs it, saying which.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import pytest


def job_dir(sweep: Path, number: int) -> Path:
    """The job folder of `number`: `<number>` or `<number>_<its overrides>`, whichever layout the sweep uses."""
    found = [p for p in sweep.iterdir() if p.is_dir() and re.fullmatch(rf"{number}(_.*)?", p.name)]
    assert len(found) == 1, sorted(p.name for p in sweep.iterdir())
    return found[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s")


def stop_group(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """Signal the process's whole group (a server's workers too) and reap it."""
    if process.poll() is None:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
    try:
        process.wait(timeout=5)  # a throwaway server: no need to wait long for a graceful stop
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=20)


@dataclass
class MlflowServer:
    uri: str
    process: subprocess.Popen
    log: Path

    def kill(self) -> None:
        stop_group(self.process, signal.SIGKILL)


@contextmanager
def mlflow_server(folder: Path) -> Iterator[MlflowServer]:
    """`mlflow server` with a SQLite backend store and served artifacts in `folder`."""
    pytest.importorskip("mlflow", reason="the `mlflow` extra is not installed (pip install -e '.[mlflow]')")
    mlflow = shutil.which("mlflow", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    if mlflow is None:
        pytest.skip("the `mlflow` command is not on PATH")
    port = free_port()
    log = folder / "mlflow-server.log"
    command = [
        mlflow, "server", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
        "--artifacts-destination", str(folder / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
        "--workers", "1",
    ]  # fmt: skip
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=folder, start_new_session=True)
    server = MlflowServer(f"http://127.0.0.1:{port}", process, log)

    def answers() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"mlflow server exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{server.uri}/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    try:
        wait_until(answers, 120, "mlflow server")
        yield server
    finally:
        stop_group(process)


def postgres_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(candidates[-1]).parent if candidates else None


@contextmanager
def postgres_server() -> Iterator[str]:
    """A PostgreSQL cluster in a temporary folder; yields its SQLAlchemy URL (database `postgres`, trust auth).

    As root (initdb refuses root) the cluster belongs to the `postgres` user that Debian's package creates.
    """
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install -e '.[postgres]')")
    bin_dir = postgres_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL's initdb/pg_ctl not found (Debian: apt-get install postgresql)")
    as_user: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="cnn_zoo-pg-"))
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: initdb refuses root")
        try:
            shutil.chown(folder, user="postgres")
        except LookupError:
            pytest.skip("running as root without a `postgres` user: initdb refuses root")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", free_port()

    def run(*command: str) -> None:
        subprocess.run([*as_user, *command], check=True, capture_output=True, text=True, timeout=120)

    try:
        run(str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
        options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50"
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "server.log"), "-w", "start")
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                           capture_output=True, timeout=60)  # fmt: skip
        shutil.rmtree(folder, ignore_errors=True)


class KillAtEpoch(L.Callback):
    """SIGKILL a process group after a training epoch: the tracking server dies mid-run."""

    def __init__(self, pgid: int, epoch: int = 0) -> None:
        self.pgid, self.epoch = pgid, epoch

    def on_train_epoch_end(self, trainer: object, pl_module: object) -> None:
        if getattr(trainer, "current_epoch", -1) == self.epoch:
            with suppress(ProcessLookupError):
                os.killpg(self.pgid, signal.SIGKILL)
