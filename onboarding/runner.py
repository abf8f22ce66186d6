"""One run of one onboarding: its steps as a graph, each started once its needs are saved.

Steps that need only the room (folders, access, link) run at the same time; a template copy waits only for its
folder; the callback waits for everything. A step's result is saved, under the run's claim, before any step
that needs it starts; steps already saved by an earlier run are skipped. The run ends in one of four ways:
completed; queued again after a backoff (a transient failure); failed (a permanent failure, or the attempt or age
budget spent); or released untouched (the worker is shutting down).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import dataclass
from datetime import timedelta

from onboarding import logs, queue
from onboarding.db import Database
from onboarding.errors import PermanentError, ServiceError, TransientError
from onboarding.metrics import ONBOARDINGS_FINISHED, observe_step
from onboarding.models import utcnow
from onboarding.steps import RunContext, Step

log = logging.getLogger("onboarding.runner")


@dataclass(frozen=True)
class RetryPolicy:
    """When a transient failure is retried, and when the onboarding is given up as failed."""

    base_seconds: float
    max_seconds: float
    max_attempts: int
    max_age_seconds: float

    def delay(self, attempts: int, retry_after: float | None) -> float:
        """Capped exponential backoff with jitter, never sooner than the server's Retry-After."""
        backoff = min(self.max_seconds, self.base_seconds * 2 ** max(0, attempts - 1))
        return max(backoff * random.uniform(0.5, 1.0), retry_after or 0.0)


class LeaseLost(Exception):
    """Another worker owns the onboarding now; stop without touching DocSpace further."""


class Run:
    """Executes the remaining steps of one claimed onboarding."""

    def __init__(self, db: Database, claim: queue.Claim, steps: list[Step], ctx: RunContext, pool: Executor,
                 policy: RetryPolicy, lease_seconds: float, stopping: threading.Event,
                 notify_failures: bool = False) -> None:
        """A run of steps for the claim, on the step pool, stopping early when stopping is set."""
        self.db = db
        self.claim = claim
        self.steps = steps
        self.ctx = ctx
        self.pool = pool
        self.policy = policy
        self.lease_seconds = lease_seconds
        self.stopping = stopping
        self.notify_failures = notify_failures
        self.lost = False
        ctx.record_attempt = self._record_attempt

    def _record_attempt(self, name: str) -> None:
        """Save that a step is about to create something, or stop the step if the claim was lost."""
        if not queue.record_attempt(self.db, self.claim, name, self.lease_seconds):
            self.lost = True
            raise LeaseLost(name)

    def execute(self) -> str:
        """Run the steps; return completed, retrying, failed, released or lost."""
        work = self.ctx.work
        self.ctx.results.update(work.done)
        if self.claim.attempts > self.policy.max_attempts:
            return self._fail({"step": None, "message": f"gave up after {self.policy.max_attempts} attempts "
                                                        "(the last ones did not finish: was the worker killed?)",
                               "kind": "permanent", "attempts": self.claim.attempts - 1})
        failures = self._run_steps()
        if self.lost:
            log.warning("lease lost; another worker owns this onboarding now", extra={"outcome": "lost"})
            return "lost"
        if failures:
            return self._after_failure(failures)
        if any(step.name not in self.ctx.results for step in self.steps):
            # Shutting down: leave the rest to the next worker, without spending an attempt.
            return "released" if queue.finish(self.db, self.claim, "queued", run_at=utcnow(),
                                              attempts_delta=-1) else "lost"
        if not queue.finish(self.db, self.claim, "completed"):
            return "lost"
        ONBOARDINGS_FINISHED.labels("completed").inc()
        return "completed"

    def _run_steps(self) -> list[tuple[Step, ServiceError]]:
        """Start every step whose needs are met until all are done or one fails; return the failures."""
        pending = [step for step in self.steps if step.name not in self.ctx.results]
        running: dict[Future, Step] = {}
        failures: list[tuple[Step, ServiceError]] = []
        while pending or running:
            if not failures and not self.lost and not self.stopping.is_set():
                for step in [step for step in pending if all(need in self.ctx.results for need in step.needs)]:
                    pending.remove(step)
                    running[self.pool.submit(self._timed, step)] = step
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            ended = [(running.pop(future), *future.result()) for future in finished]
            if self.lost:
                continue  # nothing more may be written under this claim
            now = utcnow()
            outcomes = [queue.StepOutcome(step.name, result, None if error is None else error.as_dict(),
                                          now - timedelta(seconds=seconds))
                        for step, result, error, seconds in ended]
            # Steps that ended together are saved together: one transaction, one fsync.
            if not queue.save_steps(self.db, self.claim, outcomes, self.lease_seconds):
                self.lost = True
                continue
            for step, result, error, seconds in ended:
                observe_step(step.kind, "ok" if error is None else error.kind, seconds)
                with logs.bound(step=step.name):
                    if error is None:
                        log.info("step done", extra={"outcome": "done", "duration_ms": int(seconds * 1000)})
                        self.ctx.results[step.name] = result
                    else:
                        log.warning("step failed: %s", error.message,
                                    extra={"outcome": error.kind, "duration_ms": int(seconds * 1000)})
                        failures.append((step, error))
        return failures

    def _timed(self, step: Step) -> tuple[dict | None, ServiceError | None, float]:
        """Run one step in a pool thread; never raises."""
        started = time.monotonic()
        with logs.bound(onboarding_id=self.ctx.work.onboarding_id, deal_id=self.ctx.work.deal.deal_id,
                         step=step.name):
            try:
                return step.run(self.ctx), None, time.monotonic() - started
            except ServiceError as error:
                return None, error, time.monotonic() - started
            except LeaseLost:
                return None, None, time.monotonic() - started
            except Exception as error:  # a bug or an answer we cannot read: stop, keep it visible
                log.exception("step crashed")
                return None, PermanentError(f"unexpected {type(error).__name__} in step {step.name}: {error}",
                                            step.name), time.monotonic() - started

    def _after_failure(self, failures: list[tuple[Step, ServiceError]]) -> str:
        """Queue the onboarding for a retry, or fail it, after one or more steps failed."""
        step, error = next(((s, e) for s, e in failures if isinstance(e, PermanentError)), failures[0])
        last_error = {"step": step.name, **error.as_dict(), "attempts": self.claim.attempts,
                      "at": utcnow().isoformat(timespec="seconds")}
        if isinstance(error, PermanentError):
            return self._fail(last_error)
        age = (utcnow() - self.ctx.work.created_at).total_seconds()
        if self.claim.attempts >= self.policy.max_attempts or age >= self.policy.max_age_seconds:
            last_error["message"] = (f"gave up after {self.claim.attempts} attempts over {int(age)} s; last error: "
                                     f"{error.message}")
            return self._fail(last_error)
        retry_after = max((e.retry_after or 0.0) for _, e in failures if isinstance(e, TransientError))
        delay = self.policy.delay(self.claim.attempts, retry_after)
        last_error["next_attempt_in_seconds"] = round(delay, 1)
        ok = queue.finish(self.db, self.claim, "queued", last_error=last_error,
                          run_at=utcnow() + timedelta(seconds=delay))
        return "retrying" if ok else "lost"

    def _fail(self, last_error: dict) -> str:
        """Mark the onboarding failed with its reason."""
        if not queue.finish(self.db, self.claim, "failed", last_error=last_error):
            return "lost"
        ONBOARDINGS_FINISHED.labels("failed").inc()
        log.error("onboarding failed: %s", last_error["message"], extra={"outcome": "failed"})
        if self.notify_failures:
            self._tell_crm_it_failed(last_error)
        return "failed"

    def _tell_crm_it_failed(self, last_error: dict) -> None:
        """Best effort: tell the CRM once (the onboarding stays visible to operators either way)."""
        try:
            self.ctx.write_back.onboarding_failed(self.ctx.work, last_error)
        except ServiceError as error:
            log.warning("could not tell the CRM about the failure: %s", error.message)
