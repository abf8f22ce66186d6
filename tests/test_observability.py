"""Metrics and logs after an end-to-end run: the series on-call needs, JSON lines with context, no secrets."""

from __future__ import annotations

import json

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import (
    ADMIN_TOKEN,
    API_KEY,
    CRM_SECRET,
    OLD_WEBHOOK_SECRET,
    WEBHOOK_SECRET,
    deal_payload,
    service_env,
    signed,
)
from tests.processes import free_port, start_web, start_worker
from tests.test_e2e import Stack

pytestmark = pytest.mark.slow


@pytest.fixture
def observed(sqlite_url, sandbox, tmp_path):
    """A stack sharing one metrics directory between web and worker, after a completed, a duplicate, a refused
    and an unsigned delivery."""
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = service_env(sqlite_url, sandbox.url, sandbox.crm_url, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    port = free_port()
    web = start_web(env, tmp_path, port)
    worker = start_worker(env, tmp_path)
    stack = Stack(f"http://127.0.0.1:{port}", env, web, worker, sandbox)
    raw, headers = signed(deal_payload("D-obs"))
    requests.post(f"{stack.url}/webhooks/deal-won", data=raw, headers=headers, timeout=10)
    onboarding_id = requests.post(f"{stack.url}/webhooks/deal-won", data=raw, headers=headers,
                                  timeout=10).json()["onboarding_id"]
    stack.deliver(deal_payload("D-obs-bad", client={"id": "C"}))
    requests.post(f"{stack.url}/webhooks/deal-won", data=raw, headers={**headers, "webhook-signature": "v1,x"},
                  timeout=10)
    stack.wait_status(onboarding_id, "completed")
    yield stack, onboarding_id
    worker.stop()
    web.stop()


def samples(url: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of /metrics, keyed by name and labels."""
    text = requests.get(f"{url}/metrics", timeout=10).text
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(found: dict, name: str, **labels: str) -> float:
    """The sum of the samples of a name whose labels include the given ones."""
    wanted = set(labels.items())
    return sum(v for (sample, sample_labels), v in found.items() if sample == name and wanted <= sample_labels)


def test_metrics_show_intake_queue_steps_and_calls(observed):
    stack, _ = observed
    found = samples(stack.url)
    assert value(found, "onboarding_webhooks_received_total", outcome="created") == 1
    assert value(found, "onboarding_webhooks_received_total", outcome="duplicate") == 1
    assert value(found, "onboarding_webhooks_received_total", outcome="rejected") == 1
    assert value(found, "onboarding_webhooks_received_total", outcome="unauthorized") == 1
    assert value(found, "onboarding_signature_failures_total", reason="mismatch") == 1
    assert value(found, "onboarding_onboardings", status="completed") == 1
    assert value(found, "onboarding_queue_depth") == 0
    assert ("onboarding_queue_oldest_age_seconds", frozenset()) in found
    for step in ("room", "folder", "copy", "access", "link", "callback"):
        assert value(found, "onboarding_step_duration_seconds_count", step=step, outcome="ok") >= 1, step
    assert value(found, "onboarding_external_call_seconds_count", service="docspace",
                 endpoint="POST files/rooms", status="200") == 1
    assert value(found, "onboarding_external_call_seconds_count", service="docspace",
                 endpoint="PUT files/rooms/{id}/share", status="200") == 1
    assert value(found, "onboarding_external_call_seconds_count", service="crm", status="200") == 1
    assert value(found, "onboarding_onboardings_finished_total", status="completed") == 1


def json_lines(output: str) -> list[dict]:
    """The JSON log lines of a process's output."""
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def test_logs_are_json_lines_with_context_and_no_secrets(observed):
    stack, onboarding_id = observed
    web_lines = json_lines(stack.web.output())
    worker_lines = json_lines(stack.worker.output())
    requests_logged = [line for line in web_lines if line["message"] == "request"]
    assert requests_logged and all(line.get("request_id") and line.get("status") for line in requests_logged)
    created = next(line for line in requests_logged if line.get("outcome") == "created")
    assert created["deal_id"] == "D-obs" and created["onboarding_id"] == onboarding_id and created["event_id"]
    assert created["path"] == "/webhooks/deal-won" and created["status"] == 202
    steps = [line for line in worker_lines if line["message"] == "step done"]
    assert len(steps) == 10
    assert all(line["onboarding_id"] == onboarding_id and line["deal_id"] == "D-obs" and line["step"]
               for line in steps)
    refused = next(line for line in requests_logged if line.get("outcome") == "unauthorized")
    assert refused["reason"] == "no signature matches" and refused["status"] == 401 and refused["level"] == "warning"
    everything = stack.web.output() + stack.worker.output()
    secrets = [API_KEY, ADMIN_TOKEN, WEBHOOK_SECRET, OLD_WEBHOOK_SECRET, CRM_SECRET,
               WEBHOOK_SECRET.removeprefix("whsec_"), CRM_SECRET.removeprefix("whsec_"), "v1,"]
    for secret in secrets:
        assert secret not in everything
    assert "contact@acme.example.com" not in everything


def test_one_line_per_request_and_none_from_gunicorn(observed):
    stack, _ = observed
    lines = json_lines(stack.web.output())
    assert not [line for line in lines if line["logger"] == "gunicorn.access"]
    served = [line for line in lines if line["message"] == "request" and line["path"] == "/webhooks/deal-won"]
    # The fixture's four deliveries (new, repeat, refused, unsigned), each once, with its own request id.
    assert [line["status"] for line in served] == [202, 200, 422, 401]
    assert len({line["request_id"] for line in served}) == 4
