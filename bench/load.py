"""A small HTTP load generator: keep-alive connections in threads of a separate process, latencies recorded.

Running it in its own process keeps the client's CPU use out of the server processes' GIL; the figures of the
real and the trivial endpoint are taken with the same client on the same machine, so their ratio is fair.
"""

from __future__ import annotations

import http.client
import multiprocessing
import threading
import time
from urllib.parse import urlsplit


def _worker(host: str, port: int, path: str, jobs: list[tuple[bytes, dict]], results: list, lock) -> None:
    """Send jobs over one keep-alive connection, recording (status, seconds, sent_at) for each."""
    connection = http.client.HTTPConnection(host, port, timeout=60)
    for body, headers in jobs:
        started = time.perf_counter()
        sent_at = time.time()
        try:
            connection.request("POST", path, body=body, headers=headers)
            answer = connection.getresponse()
            answer.read()
            status = answer.status
        except (OSError, http.client.HTTPException):
            connection.close()
            connection = http.client.HTTPConnection(host, port, timeout=60)
            status = 0
        elapsed = time.perf_counter() - started
        with lock:
            results.append((status, elapsed, sent_at))
    connection.close()


def _run(url: str, jobs: list[tuple[bytes, dict]], concurrency: int, out) -> None:
    """In the child process: spread the jobs over threads, then report."""
    parts = urlsplit(url)
    results: list = []
    lock = threading.Lock()
    shares = [jobs[index::concurrency] for index in range(concurrency)]
    threads = [threading.Thread(target=_worker, args=(parts.hostname, parts.port, parts.path, share, results, lock))
               for share in shares]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out.send({"results": results, "seconds": time.perf_counter() - started})
    out.close()


def hammer(url: str, jobs: list[tuple[bytes, dict]], concurrency: int) -> dict:
    """POST every job to url with this many connections at once; return latencies and totals."""
    receiver, sender = multiprocessing.Pipe(duplex=False)
    process = multiprocessing.get_context("fork").Process(target=_run, args=(url, jobs, concurrency, sender))
    process.start()
    report = receiver.recv()
    process.join()
    latencies = sorted(elapsed for _, elapsed, _ in report["results"])
    statuses: dict[int, int] = {}
    for status, _, _ in report["results"]:
        statuses[status] = statuses.get(status, 0) + 1
    return {
        "requests": len(latencies),
        "seconds": report["seconds"],
        "rps": len(latencies) / report["seconds"],
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "max_ms": latencies[-1] * 1000 if latencies else 0.0,
        "statuses": statuses,
        "first_sent": min(sent for _, _, sent in report["results"]),
    }


def percentile(ordered: list[float], pct: float) -> float:
    """The pct-th percentile of an ordered list (nearest rank)."""
    if not ordered:
        return 0.0
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]
