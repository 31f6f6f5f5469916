"""`serving.prefork` with real processes on loopback: every worker serves the one port, the
parent announces once all are ready, a killed worker is started again in its slot, SIGHUP
reaches every worker, SIGTERM
drains every worker's in-flight requests before the parent exits 0, and a worker that fails
at start stops the whole service with its status."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tessera.processes import free_port

PROGRAM = Path(__file__).with_name("forked_service.py")
ROOT = Path(__file__).resolve().parents[2]
WORKERS = 2


def start(port: int, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(PROGRAM), str(port), str(WORKERS), *extra],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def get(port: int, path: str = "/") -> dict[str, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        assert response.status == 200
        answer: dict[str, Any] = json.loads(response.read())
        return answer
    finally:
        connection.close()


def children(pid: int) -> set[int]:
    try:
        return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}
    except FileNotFoundError:
        return set()


def seen_workers(port: int, *, attempts: int = 200) -> dict[int, int]:
    """Each worker's pid, from fresh connections (each hashed to a worker's socket)."""
    seen: dict[int, int] = {}
    for _ in range(attempts):
        try:
            answer = get(port)
        except ConnectionResetError:
            continue  # waiting in the queue of a worker that was killed
        seen[answer["worker"]] = answer["pid"]
        if len(seen) == WORKERS:
            break
    return seen


@pytest.fixture
def service() -> Iterator[tuple[subprocess.Popen[str], int]]:
    port = free_port()
    process = start(port)
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == f"forked listening on http://127.0.0.1:{port}"
        yield process, port
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_every_worker_serves_the_port_and_a_killed_one_is_started_again(
    service: tuple[subprocess.Popen[str], int],
) -> None:
    process, port = service
    seen = seen_workers(port)
    assert sorted(seen) == list(range(WORKERS))
    assert set(seen.values()) == children(process.pid)
    os.kill(seen[1], signal.SIGKILL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        again = seen_workers(port)
        if sorted(again) == list(range(WORKERS)) and again[1] != seen[1]:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("worker 1 was not started again")
    assert again[0] == seen[0]
    assert set(again.values()) == children(process.pid)
    assert process.poll() is None


def test_sighup_reaches_every_worker(service: tuple[subprocess.Popen[str], int]) -> None:
    process, port = service
    process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        hups = {answer["worker"]: answer["hups"] for answer in map(get, [port] * 20)}
        if hups == dict.fromkeys(range(WORKERS), 1):
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"SIGHUPs seen by each worker: {hups}")
    assert process.poll() is None


def test_sigterm_drains_every_worker_and_the_parent_exits_0(
    service: tuple[subprocess.Popen[str], int],
) -> None:
    process, port = service
    workers = children(process.pid)
    answers: list[dict[str, Any]] = []
    slow = [threading.Thread(target=lambda: answers.append(get(port, "/slow"))) for _ in range(8)]
    for thread in slow:
        thread.start()
    time.sleep(0.3)  # the slow requests are in flight
    process.send_signal(signal.SIGTERM)
    for thread in slow:
        thread.join(10)
    assert process.wait(10) == 0
    assert len(answers) == len(slow)
    assert all(answer["slow"] for answer in answers)
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()


def test_a_worker_failing_at_start_stops_the_service_with_its_status() -> None:
    process = start(free_port(), "1")
    try:
        _, errors = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 2
    assert "worker 1: the settings of this worker are wrong" in errors
