"""The worker process: claims onboardings, runs their steps, keeps its leases alive, stops gracefully.

`flask --app wsgi worker` runs one. Any number may run at once, on any number of machines sharing the
database: claims and leases (queue.py) keep two workers off the same onboarding. On SIGTERM or SIGINT the worker
claims nothing more, lets running steps finish for up to WORKER_GRACE_SECONDS, and hands every unfinished
onboarding back to the queue at once instead of leaving it to wait for its lease to expire.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait

from onboarding import doorbell, logs, queue, retention
from onboarding.bootstrap import STEP_THREADS_PER_ONBOARDING, Services
from onboarding.models import utcnow
from onboarding.pending import PendingEvents
from onboarding.runner import RetryPolicy, Run
from onboarding.steps import RunContext
from onboarding.workers import process_name

log = logging.getLogger("onboarding.worker")

BACKOFF_ON_DATABASE_ERROR = 5.0


class Worker:
    """Claims and runs onboardings until told to stop."""

    def __init__(self, services: Services, name: str | None = None) -> None:
        """A worker using the services' clients, with its own thread pools."""
        settings = services.settings
        self.services = services
        self.settings = settings
        self.db = services.db
        self.name = name or process_name()
        self.registry = services.registry
        self.pending = PendingEvents(services)
        self.policy = RetryPolicy(settings.retry_base_seconds, settings.retry_max_seconds, settings.max_attempts,
                                  settings.max_age_seconds)
        self.stopping = threading.Event()
        self._wake = threading.Event()
        self._runs: dict[str, Run] = {}
        self._runs_lock = threading.Lock()
        self._step_pool = ThreadPoolExecutor(settings.worker_concurrency * STEP_THREADS_PER_ONBOARDING,
                                             thread_name_prefix="step")

    def stop(self, *_args) -> None:
        """Ask the worker to stop (the SIGTERM and SIGINT handler)."""
        self.stopping.set()
        self._wake.set()

    def run(self, once: bool = False) -> None:
        """Claim and run onboardings until stopped (or, with once, until nothing is claimable)."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)
        self._register()
        threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True).start()
        threading.Thread(target=self.pending.run, args=(self.stopping,), name="pending", daemon=True).start()
        threading.Thread(target=doorbell.listen, args=(self.db, self._wake.set, self.stopping), name="doorbell",
                         daemon=True).start()
        threading.Thread(target=retention.purge_daily, args=(self.db, self.settings.payload_retention_days,
                                                              self.stopping), name="retention", daemon=True).start()
        concurrency = self.settings.worker_concurrency
        futures: set[Future] = set()
        log.info("worker started", extra={"worker": self.name, "count": concurrency})
        with ThreadPoolExecutor(concurrency, thread_name_prefix="onboarding") as runs:
            while not self.stopping.is_set():
                futures = {future for future in futures if not future.done()}
                claims = self._claim(concurrency - len(futures))
                for claim in claims:
                    future = runs.submit(self._run, claim)
                    future.add_done_callback(lambda _: self._wake.set())
                    futures.add(future)
                if once and not futures and not claims and not self.pending.waiting():
                    break
                if not claims or len(futures) >= concurrency:
                    self._wake.wait(self.settings.worker_poll_seconds)
                    self._wake.clear()
            self._drain(futures)
        self._step_pool.shutdown(wait=False, cancel_futures=True)
        self._quietly(self.registry.deregister, self.name)
        log.info("worker stopped", extra={"worker": self.name})

    def _claim(self, free: int) -> list[queue.Claim]:
        """Claim up to free onboardings; nothing when the database is unreachable."""
        if free <= 0:
            return []
        try:
            if not queue.has_work(self.db):
                return []
            return queue.claim(self.db, self.name, self.settings.lease_seconds, free)
        except Exception:
            log.exception("cannot claim work; retrying in %s s", BACKOFF_ON_DATABASE_ERROR)
            self.stopping.wait(BACKOFF_ON_DATABASE_ERROR)
            return []

    def _run(self, claim: queue.Claim) -> str:
        """Run one claimed onboarding to the end of this attempt."""
        with logs.bound(onboarding_id=claim.onboarding_id):
            try:
                work = queue.load_work(self.db, claim.onboarding_id)
                source = work.deal.source
                crm = self.services.crms.get(source)
                if crm is None:  # its CRM was switched off since it was recorded: say so, do not loop on it
                    message = (f"the {source} CRM is not configured in this worker: set its settings "
                               "(README.md, Settings), restart the workers, then retry")
                    queue.finish(self.db, claim, "failed", last_error={
                        "step": None, "message": message, "kind": "permanent", "attempts": claim.attempts,
                        "at": utcnow().isoformat(timespec="seconds")})
                    log.error("onboarding failed: %s", message, extra={"outcome": "failed"})
                    return "failed"
                ctx = RunContext(work, self.services.plan, self.services.docspace, crm.write_back,
                                 self.settings.account_manager_id)
                run = Run(self.db, claim, self.services.steps(source), ctx, self._step_pool, self.policy,
                          self.settings.lease_seconds, self.stopping, self.settings.notify_failures)
                with self._runs_lock:
                    self._runs[claim.onboarding_id] = run
                with logs.bound(deal_id=work.deal.deal_id):
                    outcome = run.execute()
                    log.info("run ended: %s", outcome, extra={"outcome": outcome, "count": claim.attempts})
                    return outcome
            except Exception:
                # The database went away mid-run, or a bug: the lease will expire and another attempt follow.
                log.exception("run crashed")
                return "crashed"
            finally:
                with self._runs_lock:
                    self._runs.pop(claim.onboarding_id, None)

    def _register(self) -> None:
        """Enter the registry, taking over at once from dead workers of this host (their claims and slots)."""
        try:
            for dead in self.registry.register(self.name):
                self.services.limit_store.release_holder(dead)
        except Exception:
            log.exception("cannot enter the worker registry; the heartbeat will try again")

    def _heartbeat(self) -> None:
        """Renew the lease of every running onboarding, often enough that none expires while it runs, and tell the
        registry this worker lives."""
        interval = self.settings.lease_seconds / 3
        while not self.stopping.wait(interval):
            with self._runs_lock:
                runs = list(self._runs.values())
            for run in runs:
                try:
                    if not queue.renew(self.db, run.claim, self.settings.lease_seconds):
                        run.lost = True
                except Exception:
                    log.exception("cannot renew a lease")
            self._quietly(self.registry.heartbeat, self.name, len(runs))

    @staticmethod
    def _quietly(action, *args) -> None:
        """Run a registry action; a database blip is logged, not fatal (the next heartbeat tries again)."""
        try:
            action(*args)
        except Exception as error:
            log.warning("worker registry: %s", type(error).__name__, extra={"reason": str(error)[:200]})

    def _drain(self, futures: set[Future]) -> None:
        """On shutdown: give running steps the grace period, then hand back what is still running."""
        pending = {future for future in futures if not future.done()}
        if pending:
            log.info("stopping: waiting for running steps", extra={"count": len(pending)})
            _, pending = wait(pending, timeout=self.settings.worker_grace_seconds)
        with self._runs_lock:
            runs = list(self._runs.values())
        for run in runs:
            released = queue.finish(self.db, run.claim, "queued", run_at=utcnow(), attempts_delta=-1)
            log.warning("released an unfinished onboarding" if released else "lease already lost",
                        extra={"outcome": "released"})
        if pending:
            # Threads still blocked in a call cannot be interrupted; their claims are released above, so their
            # late writes are refused. Exit without waiting for them.
            logging.shutdown()
            os._exit(0)

