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


def _worker(host: str, port: int, path: str, jobs: list[tuple[bytes, dict]], results: list, lock,
            turn: threading.Event, answered: threading.Event, done: list) -> None:
    """When its turn comes, send jobs over one keep-alive connection, recording (status, seconds, sent_at) for each;
    set answered at the first answer, and note when the last one came."""
    turn.wait()
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
        answered.set()
    done.append(time.time())
    connection.close()


def _run(url: str, jobs: list[tuple[bytes, dict]], concurrency: int, ramp: bool, out) -> None:
    """In the child process: spread the jobs over threads, then report.

    With ramp, the connections open one after another, each once the one before has its first answer, while those
    already open keep sending: as a load balancer's pool grows with the load. A server process already busy is
    then slower to accept than an idle one, so the connections spread over gunicorn's processes as they would in
    service, instead of all landing in the same instant on whichever process wakes first.
    """
    parts = urlsplit(url)
    results: list = []
    done: list[float] = []
    lock = threading.Lock()
    shares = [jobs[index::concurrency] for index in range(concurrency)]
    turns = [threading.Event() for _ in shares]
    answers = [threading.Event() for _ in shares]
    threads = [threading.Thread(target=_worker, args=(parts.hostname, parts.port, parts.path, share, results, lock,
                                                      turn, answered, done))
               for share, turn, answered in zip(shares, turns, answers, strict=True)]
    for thread in threads:
        thread.start()
    started, wall_started = time.perf_counter(), time.time()
    for turn, answered in zip(turns, answers, strict=True):
        turn.set()
        if ramp:
            answered.wait()
    all_open = time.time() if ramp else wall_started
    for thread in threads:
        thread.join()
    out.send({"results": results, "seconds": time.perf_counter() - started, "all_open": all_open,
              "first_done": min(done)})
    out.close()


def hammer(url: str, jobs: list[tuple[bytes, dict]], concurrency: int, ramp: bool = False) -> dict:
    """POST every job to url with this many connections at once; return latencies and totals.

    Without ramp, all connections start at once and the figures cover the whole run. With ramp (see _run), the
    rate and latencies are those of the requests answered while every connection was open and busy: after the
    last one opened, until the first ran out of jobs. requests and seconds always cover the whole run.
    """
    receiver, sender = multiprocessing.Pipe(duplex=False)
    process = multiprocessing.get_context("fork").Process(target=_run, args=(url, jobs, concurrency, ramp, sender))
    process.start()
    report = receiver.recv()
    process.join()
    results = report["results"]
    if ramp:
        start, end = report["all_open"], report["first_done"]
        steady = [result for result in results if start <= result[2] + result[1] <= end]
        rate = len(steady) / (end - start) if end > start else 0.0
    else:
        steady, rate = results, len(results) / report["seconds"]
    latencies = sorted(elapsed for _, elapsed, _ in steady)
    statuses: dict[int, int] = {}
    for status, _, _ in results:
        statuses[status] = statuses.get(status, 0) + 1
    return {
        "requests": len(results),
        "seconds": report["seconds"],
        "rps": rate,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "max_ms": latencies[-1] * 1000 if latencies else 0.0,
        "statuses": statuses,
        "first_sent": min(sent for _, _, sent in results),
    }


def percentile(ordered: list[float], pct: float) -> float:
    """The pct-th percentile of an ordered list (nearest rank)."""
    if not ordered:
        return 0.0
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]
