"""Prometheus metrics: counters and histograms recorded by every process, and GET /metrics.

Under gunicorn (several processes) and beside the worker process, prometheus_client's multiprocess mode is used
when PROMETHEUS_MULTIPROC_DIR is set before the processes start (deploy/gunicorn.conf.py and the start scripts set
it): each process writes its samples to files there, and /metrics adds them up. Figures that live in the database
(onboardings by status, queue depth and age) are read from it at scrape time, so every web instance reports the
same truth.
"""

from __future__ import annotations

import os
import time

from flask import Blueprint, Response, current_app
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from onboarding.queue import queue_stats

bp = Blueprint("metrics", __name__)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

WEBHOOKS = Counter("onboarding_webhooks_received_total", "Webhook deliveries received, by source and outcome",
                   ["source", "outcome"])
SIGNATURE_FAILURES = Counter("onboarding_signature_failures_total", "Webhook deliveries refused for their signature",
                             ["source", "reason"])
STEPS = Histogram("onboarding_step_duration_seconds", "Duration of onboarding steps, by step kind and outcome",
                  ["step", "outcome"], buckets=LATENCY_BUCKETS)
CALLS = Histogram("onboarding_external_call_seconds", "Latency of calls to DocSpace and the CRM",
                  ["service", "endpoint", "status"], buckets=LATENCY_BUCKETS)
ONBOARDINGS_FINISHED = Counter("onboarding_onboardings_finished_total", "Onboardings that reached an end state",
                               ["status"])


def observe_call(service: str, endpoint: str, status: str, seconds: float) -> None:
    """Record one call to DocSpace or the CRM."""
    CALLS.labels(service, endpoint, status).observe(seconds)


def observe_step(step: str, outcome: str, seconds: float) -> None:
    """Record one step run; step is the step's kind (room, folder, copy, access, link, callback)."""
    STEPS.labels(step.split(":", 1)[0], outcome).observe(seconds)


class QueueCollector:
    """Onboardings by status, queue depth and the age of the oldest waiting onboarding, read from the database."""

    def __init__(self, queue_stats) -> None:
        """A collector calling queue_stats() -> {"by_status": {...}, "ready": n, "oldest_ready_seconds": s}."""
        self.queue_stats = queue_stats

    def collect(self):
        """Yield the gauges."""
        stats = self.queue_stats()
        by_status = GaugeMetricFamily("onboarding_onboardings", "Onboardings by status", labels=["status"])
        for status, count in sorted(stats["by_status"].items()):
            by_status.add_metric([status], count)
        yield by_status
        yield GaugeMetricFamily("onboarding_queue_depth", "Onboardings waiting for a worker now",
                                value=stats["ready"])
        yield GaugeMetricFamily("onboarding_queue_oldest_age_seconds",
                                "Age of the oldest onboarding waiting for a worker",
                                value=stats["oldest_ready_seconds"])


class LimitsCollector:
    """The fleet-wide limits of every outside API, read from their shared state at scrape time."""

    def __init__(self, limiters: dict) -> None:
        """A collector of these FleetLimiters, by service."""
        self.limiters = limiters

    def collect(self):
        """Yield the gauges (nothing for an API whose state cannot be read now)."""
        in_use = GaugeMetricFamily("onboarding_limit_writes_in_flight",
                                   "Concurrent writes in flight to an outside API, across the fleet",
                                   labels=["service"])
        allowed = GaugeMetricFamily("onboarding_limit_writes_max", "Concurrent writes an outside API allows",
                                    labels=["service"])
        left = GaugeMetricFamily("onboarding_limit_requests_left",
                                 "Requests the fleet may still start in the API's current window", labels=["service"])
        paused = GaugeMetricFamily("onboarding_limit_paused_seconds",
                                   "Seconds the fleet still waits before calling an API (a 429 asked for it)",
                                   labels=["service"])
        for service, limiter in sorted(self.limiters.items()):
            try:
                state = limiter.state()
            except Exception:
                continue
            in_use.add_metric([service], state.writes_in_flight)
            allowed.add_metric([service], limiter.max_concurrent_writes)
            left.add_metric([service], max(0, limiter.rate - state.calls_in_window))
            paused.add_metric([service], max(0.0, state.paused_until - time.time()))
        yield from (in_use, allowed, left, paused)


def scrape_registry(services) -> CollectorRegistry:
    """A registry of every process's samples (or this one's, outside multiprocess mode), the queue figures and the
    fleet's limits."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:
        for collector in (WEBHOOKS, SIGNATURE_FAILURES, STEPS, CALLS, ONBOARDINGS_FINISHED):
            registry.register(collector)
    registry.register(QueueCollector(lambda: queue_stats(services.db)))
    registry.register(LimitsCollector(services.limiters))
    return registry


@bp.get("/metrics")
def scrape():
    """Every process's samples plus the database's figures, in the Prometheus text format."""
    registry = scrape_registry(current_app.extensions["onboarding"])
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


def serve_worker_metrics(port: int, services) -> None:
    """Serve /metrics from a worker process in a background thread."""
    start_http_server(port, registry=scrape_registry(services))
