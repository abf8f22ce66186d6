"""python -m bench: the accept path, one onboarding's latency, and a burst of deals; prints a table, writes JSON.

Every scenario starts its own processes (gunicorn with deploy/gunicorn.conf.py, a worker, the DocSpace sandbox)
on a fresh SQLite database under a temporary directory, exactly as the quick start runs them.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import random
import secrets
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
import requests

from bench.floor import PIECES as FLOOR
from bench.load import hammer
from bench.parts import CALLS, accept_parts
from onboarding.signatures import parse_secret, signed_headers
from tests.processes import ROOT, Process, free_port, run_flask, start_sandbox, start_web, start_worker, wait_until

ROUNDS = 5
WEBHOOK_SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
API_KEY = "sk-bench-" + secrets.token_hex(8)
ADMIN_TOKEN = secrets.token_hex(16)
MANAGER_ID = "22222222-2222-4222-8222-222222222222"


# --postgres: the PostgreSQL server each scenario gets a database of its own on (created, then dropped).
POSTGRES_SERVER: str | None = None
_created_databases: list[str] = []


def scenario_database(workdir: Path) -> str:
    """A fresh database for one scenario: a SQLite file in its directory, or a new database on POSTGRES_SERVER."""
    if POSTGRES_SERVER is None:
        return f"sqlite:///{workdir / 'bench.db'}"
    name = f"onboarding_bench_{secrets.token_hex(4)}"
    with psycopg.connect(POSTGRES_SERVER, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    _created_databases.append(name)
    return POSTGRES_SERVER.rsplit("/", 1)[0] + "/" + name


def drop_scenario_databases() -> None:
    """Drop the databases the scenarios created on POSTGRES_SERVER."""
    if POSTGRES_SERVER is None:
        return
    with psycopg.connect(POSTGRES_SERVER, autocommit=True) as admin:
        while _created_databases:
            admin.execute(f'DROP DATABASE IF EXISTS "{_created_databases.pop()}" WITH (FORCE)')


def service_env(workdir: Path, docspace_url: str, crm_url: str, **overrides: str) -> dict[str, str]:
    """The service's environment for a benchmark run: defaults, except what a scenario overrides."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PROMETHEUS")}
    env.update({
        "DOCSPACE_URL": docspace_url, "DOCSPACE_API_KEY": API_KEY, "WEBHOOK_SECRETS": WEBHOOK_SECRET,
        "CRM_CALLBACK_URL": crm_url, "CRM_CALLBACK_SECRET": WEBHOOK_SECRET, "ADMIN_TOKEN": ADMIN_TOKEN,
        "PUBLIC_BASE_URL": "http://127.0.0.1", "SECRET_KEY": secrets.token_hex(16),
        "DATABASE_URL": scenario_database(workdir), "ACCOUNT_MANAGER_ID": MANAGER_ID,
        "PROMETHEUS_MULTIPROC_DIR": str(workdir / "metrics"),
    })
    (workdir / "metrics").mkdir(exist_ok=True)
    env.update(overrides)
    result = run_flask(env, "db", "upgrade")
    if result.returncode != 0:
        raise SystemExit(f"bench: db upgrade failed:\n{result.stderr}")
    return env


def signed_deals(count: int, prefix: str) -> list[tuple[bytes, dict]]:
    """Distinct, correctly signed deal-won requests."""
    key = parse_secret(WEBHOOK_SECRET)
    jobs = []
    for number in range(count):
        body = json.dumps({
            "type": "deal.won", "deal": {"id": f"{prefix}-{number}", "title": "Annual plan"},
            "client": {"id": f"C-{number}", "name": f"Client {number}", "email": f"client{number}@bench.example"},
            "account_manager": {"docspace_user_id": MANAGER_ID}}).encode()
        headers = {"Content-Type": "application/json", **signed_headers(key, f"msg_{uuid.uuid4().hex}", body)}
        jobs.append((body, headers))
    return jobs


def memory_kib(pid: int) -> dict[str, int]:
    """Peak and current resident memory of a process (Linux /proc), in KiB."""
    try:
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    except OSError:
        return {"peak_kib": 0, "now_kib": 0}
    return {"peak_kib": int(fields["VmHWM"].split()[0]), "now_kib": int(fields["VmRSS"].split()[0])}


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def gunicorn_processes(master: Process) -> list[int]:
    """The master's pid and its workers' pids."""
    children = subprocess.run(["pgrep", "-P", str(master.popen.pid)], capture_output=True, text=True).stdout.split()
    return [master.popen.pid, *map(int, children)]


def accept_path(workdir: Path, requests_count: int, concurrency: int, breakdown: bool = False) -> dict:
    """Throughput and latency of POST /webhooks/deal-won against a trivial endpoint, same gunicorn settings.

    The floor (bench/floor.py) is the same app with the validation, the durable write and the log line taken
    out: the most any implementation of that work could reach. With breakdown, the app is also served without
    each of those pieces alone: what each costs in a busy server.
    """
    # No worker is recycled in the middle of a round (gunicorn's max_requests would, every ~10,000 requests).
    env = {**service_env(workdir, "http://127.0.0.1:9", "http://127.0.0.1:9/crm"), "WEB_MAX_REQUESTS": "0",
           "PEER_DATABASE_URL": f"sqlite:///{workdir / 'peer.db'}"}
    servers = {}
    targets = [("trivial", "bench.trivial:app"), ("deal-won", "wsgi:app"),
               ("floor", f"bench.floor:without{FLOOR!r}"), ("peer", "bench.peer:app")]
    if breakdown:
        targets += [(f"no {piece}", f"bench.floor:without({piece!r})") for piece in FLOOR]
    for name, target in targets:
        port = free_port()
        servers[name] = (port, Process(f"accept-{name}", [os.sys.executable, "-m", "gunicorn", "-c",
                                                           "deploy/gunicorn.conf.py", "--bind", f"127.0.0.1:{port}",
                                                           target], env, workdir))
    runs: dict[str, list[dict]] = {name: [] for name in servers}
    try:
        for name, (port, _) in servers.items():
            url = f"http://127.0.0.1:{port}/webhooks/deal-won"
            wait_until(lambda url=url: _answers(url), timeout=30, message=f"{name} to start")
            hammer(url, signed_deals(200, f"W{name}"), concurrency)  # warm up the workers and the database
        # The two endpoints take turns, so a noisy moment on the machine hits both; the median run is reported.
        for round_number in range(ROUNDS):
            for name, (port, master) in servers.items():
                url = f"http://127.0.0.1:{port}/webhooks/deal-won"
                workers = gunicorn_processes(master)[1:]
                before = [cpu_seconds(pid) for pid in workers]
                run = hammer(url, signed_deals(requests_count, f"A{round_number}{name}"), concurrency, ramp=True)
                if set(run["statuses"]) - {200, 202}:
                    raise RuntimeError(f"{name} answered {run['statuses']} in round {round_number + 1}")
                used = [cpu_seconds(pid) - start for pid, start in zip(workers, before, strict=True)]
                # The CPU of gunicorn's processes per request, and how it split between them.
                run["cpu_ms_per_request"] = sum(used) * 1000 / run["requests"]
                run["cpu_split"] = [round(part / sum(used), 2) for part in used] if sum(used) else []
                runs[name].append(run)
    finally:
        for _, process in servers.values():
            process.stop()
    figures = {name: sorted(results, key=lambda run: run["rps"])[len(results) // 2] for name, results in runs.items()}
    real, trivial, floor, peer = figures["deal-won"], figures["trivial"], figures["floor"], figures["peer"]
    # Each round's ratios, from the runs that took turns in it, and their medians.
    vs_trivial = [ours["rps"] / base["rps"] for ours, base in zip(runs["deal-won"], runs["trivial"], strict=True)]
    vs_peer = [ours["rps"] / base["rps"] for ours, base in zip(runs["deal-won"], runs["peer"], strict=True)]
    return {"concurrency": concurrency, "requests": requests_count, "rounds": ROUNDS,
            "rps_per_round": {name: [round(run["rps"]) for run in results] for name, results in runs.items()},
            "cpu_split_per_round": {name: [run["cpu_split"] for run in results] for name, results in runs.items()},
            "trivial": _brief(trivial), "deal_won": _brief(real), "floor": _brief(floor), "peer": _brief(peer),
            "ratio": real["rps"] / trivial["rps"], "floor_ratio": floor["rps"] / trivial["rps"],
            "vs_trivial_per_round": [round(ratio, 3) for ratio in vs_trivial],
            "vs_peer_per_round": [round(ratio, 2) for ratio in vs_peer],
            "vs_trivial_median": round(statistics.median(vs_trivial), 3),
            "vs_peer_median": round(statistics.median(vs_peer), 2),
            **({"breakdown": {name.removeprefix("no "): _brief(figures[name]) for name in figures
                              if name.startswith("no ")}} if breakdown else {}),
            "web_workers": _web_workers(env)}


def _answers(url: str) -> bool:
    """Whether anything listens at url (any status)."""
    try:
        requests.get(url, timeout=1)
        return True
    except requests.RequestException:
        return False


def _brief(figures: dict) -> dict:
    """The figures worth keeping."""
    return {key: round(figures[key], 2) if isinstance(figures[key], float) else figures[key]
            for key in ("requests", "seconds", "rps", "p50_ms", "p99_ms", "max_ms", "cpu_ms_per_request", "cpu_split",
                        "statuses")}


def _web_workers(env: dict) -> str:
    """gunicorn's process and thread counts for these settings."""
    result = subprocess.run([os.sys.executable, "-c", "import runpy; c = runpy.run_path('deploy/gunicorn.conf.py');"
                             "print(c['workers'], c['threads'])"], env=env, cwd=ROOT, capture_output=True, text=True)
    workers, threads = result.stdout.split()
    return f"{workers} processes x {threads} threads"


def one_onboarding(workdir: Path, latency_ms: int, runs: int) -> dict:
    """Time from webhook to callback, with every DocSpace and CRM call taking latency_ms."""
    sandbox, sandbox_url = start_sandbox(workdir, API_KEY)
    requests.put(f"{sandbox_url}/_sandbox/config", json={"latency_ms": latency_ms}, timeout=5)
    env = service_env(workdir, sandbox_url, f"{sandbox_url}/crm/callbacks")
    port = free_port()
    web = start_web(env, workdir, port, name="onboarding-web")
    worker = start_worker(env, workdir, name="onboarding-worker")
    durations = []
    try:
        for number, (body, headers) in enumerate(signed_deals(runs + 1, "O")):
            # Deals do not arrive in step with the worker's idle poll: send each at a random moment after the last.
            time.sleep(random.uniform(0, 0.2))
            sent = time.time()
            requests.post(f"http://127.0.0.1:{port}/webhooks/deal-won", data=body, headers=headers, timeout=10)
            callback = wait_until(lambda number=number: _callback(sandbox_url, number), timeout=60, interval=0.005,
                                  message="the callback")
            if number:  # the first run warms up connections and caches
                durations.append(callback["received_at"] - sent)
        calls = requests.get(f"{sandbox_url}/_sandbox/calls", timeout=5).json()
    finally:
        worker.stop()
        web.stop()
        sandbox.stop()
    latency = latency_ms / 1000
    median = statistics.median(durations)
    return {"latency_ms": latency_ms, "runs": runs, "median_ms": round(median * 1000, 1),
            "min_ms": round(min(durations) * 1000, 1), "max_ms": round(max(durations) * 1000, 1),
            "critical_path_bound_ms": 4 * latency_ms, "sample_sequence_ms": 9 * latency_ms,
            "vs_bound": round(median / (4 * latency), 3), "vs_sample": round(median / (9 * latency), 3),
            "docspace_calls_per_onboarding": round(len(calls) / (runs + 1), 1)}


def _callback(sandbox_url: str, index: int) -> dict | None:
    """The index-th CRM callback, once it has arrived."""
    callbacks = requests.get(f"{sandbox_url}/_sandbox/crm/callbacks", timeout=5).json()
    return callbacks[index] if len(callbacks) > index else None


def burst(workdir: Path, deals: int, latency_ms: int, concurrency: int, worker_concurrency: int,
          max_writes: int, workers: int = 1) -> dict:
    """deals deliveries at once to a fleet of workers: acknowledgement, drain time, DocSpace write concurrency
    across the fleet (the sandbox refuses a write beyond max_writes with 429, as DocSpace does), memory."""
    sandbox, sandbox_url = start_sandbox(workdir, API_KEY)
    requests.put(f"{sandbox_url}/_sandbox/config", json={"latency_ms": latency_ms, "max_concurrent_writes": max_writes},
                 timeout=5)
    env = service_env(workdir, sandbox_url, f"{sandbox_url}/crm/callbacks",
                      WORKER_CONCURRENCY=str(worker_concurrency), DOCSPACE_MAX_CONCURRENT_WRITES=str(max_writes),
                      DOCSPACE_RATE_PER_MINUTE="1000000")
    port = free_port()
    web = start_web(env, workdir, port, name="burst-web")
    fleet = [start_worker(env, workdir, name=f"burst-worker-{index}") for index in range(workers)]
    worker = fleet[0]
    memory_before = memory_kib(worker.popen.pid)
    try:
        jobs = signed_deals(deals, "B")
        acked = hammer(f"http://127.0.0.1:{port}/webhooks/deal-won", jobs, concurrency)
        all_acked = acked["first_sent"] + acked["seconds"]
        wait_until(lambda: _callback_count(sandbox_url) >= deals, timeout=3600, interval=1.0,
                   message="every callback")
        drained = time.time() - acked["first_sent"]
        state = requests.get(f"{sandbox_url}/_sandbox/state", timeout=60).json()
        calls = requests.get(f"{sandbox_url}/_sandbox/calls", timeout=60).json()
        cpu = {"web": round(sum(cpu_seconds(pid) for pid in gunicorn_processes(web)), 1),
               "worker": round(sum(cpu_seconds(member.popen.pid) for member in fleet), 1),
               "sandbox": round(cpu_seconds(sandbox.popen.pid), 1)}
        memory = {"web": {str(pid): memory_kib(pid) for pid in gunicorn_processes(web)},
                  "worker": memory_kib(worker.popen.pid), "worker_before": memory_before,
                  "sandbox": memory_kib(sandbox.popen.pid)}
    finally:
        for member in fleet:
            member.stop()
        web.stop()
        sandbox.stop()
    writes = sum(1 for call in calls if call["method"] != "GET")
    refused = sum(1 for call in calls if call["status"] == 429)
    bound = writes * latency_ms / 1000 / max_writes
    return {"deals": deals, "latency_ms": latency_ms, "client_connections": concurrency,
            "worker_concurrency": worker_concurrency, "configured_max_writes": max_writes,
            "ack_seconds": round(all_acked - acked["first_sent"], 2), "ack_p99_ms": round(acked["p99_ms"], 1),
            "ack_max_ms": round(acked["max_ms"], 1), "ack_statuses": acked["statuses"],
            "drain_seconds": round(drained, 2), "writes": writes, "writes_per_onboarding": round(writes / deals, 2),
            "concurrency_bound_seconds": round(bound, 2), "vs_bound": round(drained / bound, 3),
            "peak_concurrent_writes": state["peak_concurrent_writes"], "rooms": len(state["rooms"]),
            "workers": workers, "refused_429": refused, "memory": memory, "cpu_seconds": cpu}


def _callback_count(sandbox_url: str) -> int:
    """How many callbacks the fake CRM has received."""
    return len(requests.get(f"{sandbox_url}/_sandbox/crm/callbacks", timeout=30).json())


def table(report: dict) -> str:
    """The report as a plain-text table."""
    on_postgres = report.get("database") == "PostgreSQL"
    lines = [f"machine: {report['machine']}" + ("; database: PostgreSQL" if on_postgres else "")]
    if "accept" in report:
        accept = report["accept"]
        lines += [f"accept path ({accept['requests']} distinct signed events, {accept['concurrency']} connections, "
                  f"gunicorn {accept['web_workers']}; median of {accept['rounds']} alternating rounds):",
                  f"  {'endpoint':10} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'CPU ms/req':>11}"]
        for name in ("trivial", "deal_won", "floor", "peer"):
            if name not in accept:
                continue
            row = accept[name]
            lines.append(f"  {name:10} {row['rps']:8.0f} {row['p50_ms']:8.1f} {row['p99_ms']:8.1f} "
                         f"{row['max_ms']:8.1f} {row['cpu_ms_per_request']:11.2f}")
        lines.append(f"  deal-won / trivial throughput: {accept['ratio']:.0%}; floor / trivial: "
                     f"{accept['floor_ratio']:.0%} (floor: deal-won without validation, durable write or log line)")
        if "vs_peer_per_round" in accept:
            lines.append("  deal-won / trivial per round: " + ", ".join(
                f"{ratio:.0%}" for ratio in accept["vs_trivial_per_round"])
                + f" (median {accept['vs_trivial_median']:.0%}); deal-won / peer per round: "
                + ", ".join(f"{ratio:.2f}x" for ratio in accept["vs_peer_per_round"])
                + f" (median {accept['vs_peer_median']:.2f}x); p99 deal-won / trivial: "
                + f"{accept['deal_won']['p99_ms'] / accept['trivial']['p99_ms']:.2f}x")
        for name, label in (("trivial", "trivial"), ("deal-won", "deal_won"), ("floor", "floor"), ("peer", "peer")):
            if name not in accept["rps_per_round"]:
                continue
            rounds = ", ".join(f"{rps} ({'/'.join(f'{share:.0%}' for share in split)})" for rps, split in
                               zip(accept["rps_per_round"][name], accept["cpu_split_per_round"][name], strict=True))
            lines.append(f"  {label} rounds, req/s (CPU split between gunicorn's processes): {rounds}")
        if "breakdown" in report["accept"]:
            deal_won = report["accept"]["deal_won"]
            lines.append("  deal-won with one piece taken out (median round): " + "; ".join(
                f"no {piece}: {row['rps']:.0f} req/s, {row['cpu_ms_per_request']:.2f} CPU ms/req "
                f"({deal_won['cpu_ms_per_request'] - row['cpu_ms_per_request']:.2f} ms less)"
                for piece, row in report["accept"]["breakdown"].items()))
    if "parts" in report:
        lines.append(f"accept path's pieces, CPU us per call in one process (no server, {CALLS} calls each):")
        lines += [f"  {name:40} {micros:8.1f}" for name, micros in report["parts"].items()]
    if "onboarding" in report:
        one = report["onboarding"]
        lines += [f"one onboarding (every call {one['latency_ms']} ms, {one['runs']} runs):",
                  f"  webhook -> callback median {one['median_ms']} ms (min {one['min_ms']}, max {one['max_ms']}); "
                  f"critical path 4L = {one['critical_path_bound_ms']} ms ({one['vs_bound']:.2f}x); "
                  f"sample's 9 calls in a row = {one['sample_sequence_ms']} ms ({one['vs_sample']:.0%})",
                  f"  DocSpace calls per onboarding: {one['docspace_calls_per_onboarding']}"]
    if "burst" in report:
        b = report["burst"]
        worker = b["memory"]["worker"]
        web_peak = max(entry["peak_kib"] for entry in b["memory"]["web"].values())
        lines += [f"burst ({b['deals']} deals at once over {b['client_connections']} connections; every call "
                  f"{b['latency_ms']} ms; {b.get('workers', 1)} worker process(es), concurrency "
                  f"{b['worker_concurrency']} each, max {b['configured_max_writes']} concurrent writes for the fleet, "
                  f"the sandbox refusing more with 429):",
                  f"  all acknowledged in {b['ack_seconds']} s (p99 {b['ack_p99_ms']} ms, max {b['ack_max_ms']} ms, "
                  f"statuses {b['ack_statuses']})",
                  f"  all complete in {b['drain_seconds']} s; bound {b['writes']} writes x L / "
                  f"{b['configured_max_writes']} = {b['concurrency_bound_seconds']} s ({b['vs_bound']:.2f}x)",
                  f"  peak concurrent DocSpace writes (whole fleet): {b['peak_concurrent_writes']}; 429s: "
                  f"{b.get('refused_429', 'not counted')}; rooms: {b['rooms']}",
                  f"  CPU seconds used: web {b['cpu_seconds']['web']}, worker {b['cpu_seconds']['worker']}, "
                  f"sandbox {b['cpu_seconds']['sandbox']}",
                  f"  peak RSS: worker {worker['peak_kib'] // 1024} MiB (idle before the burst "
                  f"{b['memory']['worker_before']['now_kib'] // 1024} MiB), "
                  f"largest web process {web_peak // 1024} MiB, "
                  f"sandbox {b['memory']['sandbox']['peak_kib'] // 1024} MiB"]
    return "\n".join(lines)


def main() -> None:
    """Run the chosen scenarios, print the table, write the JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", choices=["accept", "parts", "onboarding", "burst"], action="append")
    parser.add_argument("--requests", type=int, default=4000, help="accept path: requests per endpoint")
    parser.add_argument("--connections", type=int, default=16, help="accept path: concurrent connections")
    parser.add_argument("--breakdown", action="store_true",
                        help="accept path: also serve deal-won without its validation, its write, its log line")
    parser.add_argument("--latency-ms", type=int, default=100, help="one onboarding: each call's latency")
    parser.add_argument("--runs", type=int, default=15, help="one onboarding: measured runs")
    parser.add_argument("--deals", type=int, default=2000, help="burst: deals")
    parser.add_argument("--burst-latency-ms", type=int, default=100, help="burst: each call's latency")
    parser.add_argument("--burst-connections", type=int, default=64, help="burst: client connections")
    parser.add_argument("--worker-concurrency", type=int, default=32, help="burst: onboardings a worker runs at once")
    parser.add_argument("--max-writes", type=int, default=15, help="burst: DOCSPACE_MAX_CONCURRENT_WRITES")
    parser.add_argument("--workers", type=int, default=1, help="burst: worker processes sharing the limits")
    parser.add_argument("--postgres", metavar="URL", help="run on PostgreSQL: a server URL such as "
                        "postgresql://postgres@127.0.0.1:5432/postgres, where each scenario creates (and then drops) "
                        "a database of its own; SQLite files otherwise")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "latest.json")
    args = parser.parse_args()
    global POSTGRES_SERVER
    POSTGRES_SERVER = args.postgres
    chosen = args.only or ["accept", "parts", "onboarding", "burst"]
    report: dict = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
                    "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                    "database": "PostgreSQL" if args.postgres else "SQLite"}
    with tempfile.TemporaryDirectory(prefix="onboarding-bench-") as scratch:
        try:
            run_scenarios(chosen, args, Path(scratch), report)
        finally:
            drop_scenario_databases()
    print(table(report))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"written to {args.out}")


def run_scenarios(chosen: list[str], args: argparse.Namespace, scratch: Path, report: dict) -> None:
    """Run each chosen scenario in a directory of its own, adding its figures to report."""
    if "accept" in chosen:
        report["accept"] = accept_path(_fresh(scratch, "accept"), args.requests, args.connections, args.breakdown)
    if "parts" in chosen:
        env = service_env(_fresh(scratch, "parts"), "http://127.0.0.1:9", "http://127.0.0.1:9/crm")
        report["parts"] = accept_parts(env, signed_deals(2 * CALLS + 100, "P"))
    if "onboarding" in chosen:
        report["onboarding"] = one_onboarding(_fresh(scratch, "onboarding"), args.latency_ms, args.runs)
    if "burst" in chosen:
        report["burst"] = burst(_fresh(scratch, "burst"), args.deals, args.burst_latency_ms,
                                args.burst_connections, args.worker_concurrency, args.max_writes, args.workers)


def _fresh(scratch: Path, name: str) -> Path:
    """A new directory for one scenario."""
    path = Path(scratch) / name
    path.mkdir()
    return path


if __name__ == "__main__":
    main()
