"""Starting and stopping the real processes the end-to-end tests talk to: sandbox, gunicorn, worker."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BIN = Path(PYTHON).parent


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout: float = 15.0, interval: float = 0.05, message: str = "condition"):
    """Poll predicate until it returns something truthy; fail the test after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)


class Process:
    """A child process whose output goes to a log file the test can read on failure."""

    def __init__(self, name: str, args: list[str], env: dict, log_dir: Path) -> None:
        """Start the process."""
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(args, env=env, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT,
                                      start_new_session=True)

    def output(self) -> str:
        """Everything the process wrote so far."""
        return self.log_path.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        """Send a signal to the process (not its children)."""
        if self.popen.poll() is None:
            self.popen.send_signal(signum)

    def kill_group(self) -> None:
        """SIGKILL the process and everything it started."""
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, wait, then SIGKILL what is left; return the exit code."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill_group()
        self._log.close()
        return self.popen.returncode


def flask_command(*args: str) -> list[str]:
    """The argv of a flask CLI command on this project's app."""
    return [PYTHON, "-m", "flask", "--app", "wsgi", *args]


def run_flask(env: dict, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run a flask CLI command to completion."""
    return subprocess.run(flask_command(*args), env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def start_web(env: dict, log_dir: Path, port: int, name: str = "web", workers: int = 2) -> Process:
    """gunicorn with the shipped config, listening on port; waits until /healthz answers."""
    process = Process(name, [PYTHON, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "--bind",
                             f"127.0.0.1:{port}", "--workers", str(workers), "wsgi:app"], env, log_dir)
    url = f"http://127.0.0.1:{port}/healthz"

    def up():
        if process.popen.poll() is not None:
            raise AssertionError(f"{name} exited:\n{process.output()}")
        try:
            return requests.get(url, timeout=1).status_code == 200
        except requests.RequestException:
            return False

    wait_until(up, timeout=30, message=f"{name} to answer /healthz")
    return process


def start_worker(env: dict, log_dir: Path, name: str = "worker") -> Process:
    """A worker process; waits until it logs that it started."""
    process = Process(name, flask_command("worker"), env, log_dir)

    def up():
        if process.popen.poll() is not None:
            raise AssertionError(f"{name} exited:\n{process.output()}")
        return "worker started" in process.output()

    wait_until(up, timeout=30, message=f"{name} to start")
    return process


def start_sandbox(log_dir: Path, api_key: str, hubspot_token: str = "pat-na1-sandbox",
                  pipedrive_token: str = "pd-sandbox-token") -> tuple[Process, str]:
    """The sandbox (DocSpace, HubSpot, Pipedrive) on a free port; returns the process and its base URL."""
    port = free_port()
    process = Process("sandbox", [PYTHON, "-m", "onboarding.sandbox", "--host", "127.0.0.1", "--port", str(port),
                                  "--api-key", api_key, "--hubspot-token", hubspot_token,
                                  "--pipedrive-token", pipedrive_token], dict(os.environ), log_dir)
    url = f"http://127.0.0.1:{port}"

    def up():
        if process.popen.poll() is not None:
            raise AssertionError(f"sandbox exited:\n{process.output()}")
        try:
            return requests.get(f"{url}/_sandbox/state", timeout=1).ok
        except requests.RequestException:
            return False

    wait_until(up, timeout=30, message="the sandbox to answer")
    return process, url
