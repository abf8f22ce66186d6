"""The operator console in a real browser: Playwright driving Debian's Chromium against gunicorn, a worker and the
sandbox. UPDATE_SCREENSHOTS=1 writes the README's screenshots (docs/screenshots/) from these same runs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import requests

from tests.conftest import ADMIN_TOKEN, deal_payload, service_env, signed
from tests.processes import ROOT, free_port, start_web, start_worker, wait_until

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# As the machine's own checks start it: no sandbox as root, and no calls to Google's services.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the module (the system's; Playwright downloads nothing)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        reason = f"Chromium is not installed at {CHROMIUM}: apt-get install chromium (.ci/run does, and requires it)"
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def stack(sqlite_url, sandbox, tmp_path):
    """Web and worker on an empty database, talking to the sandbox."""
    env = service_env(sqlite_url, sandbox.url, sandbox.crm_url)
    port = free_port()
    web = start_web(env, tmp_path, port)
    worker = start_worker(env, tmp_path)
    yield f"http://127.0.0.1:{port}"
    worker.stop()
    web.stop()


def screenshots(tmp_path: Path) -> Path:
    """Where screenshots go: the README's folder when asked to update it, else the test's own."""
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        folder = ROOT / "docs" / "screenshots"
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    return tmp_path


def admin(url: str, path: str) -> dict:
    """GET from the admin API."""
    return requests.get(f"{url}{path}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10).json()


def test_an_operator_finds_a_failed_onboarding_reads_why_and_retries_it(browser, stack, sandbox, tmp_path):
    shots = screenshots(tmp_path)
    for number in range(3):  # some company for the list
        raw, headers = signed(deal_payload(f"D-10{number}"))
        requests.post(f"{stack}/webhooks/deal-won", data=raw, headers=headers, timeout=10)
    # DocSpace refuses the next room: a permanent failure, which the operator "fixes" (the fault is used up).
    wait_until(lambda: len(sandbox.rooms()) == 3, message="the first rooms")
    sandbox.faults({"action": "status", "method": "POST", "path": "^files/rooms$", "status": 403, "times": 1})
    raw, headers = signed(deal_payload("D-7781", client={"id": "C-1", "name": "Acme Corporation",
                                                         "email": "contact@acme.example.com"}))
    answer = requests.post(f"{stack}/webhooks/deal-won", data=raw, headers=headers, timeout=10).json()
    wait_until(lambda: admin(stack, f"/api/onboardings/{answer['onboarding_id']}")["status"] == "failed",
               message="the onboarding to fail")

    page = browser.new_context(viewport={"width": 1200, "height": 900}).new_page()
    page.goto(f"{stack}/console?status=failed")
    assert "/console/login" in page.url
    page.get_by_label("Admin token").fill(ADMIN_TOKEN)
    page.get_by_role("button", name="Sign in").click()
    assert page.url.endswith("/console?status=failed")
    page.goto(f"{stack}/console")
    page.get_by_role("searchbox").fill("D-7781")
    page.get_by_role("button", name="Filter").click()
    page.screenshot(path=shots / "console-search.png", full_page=True)
    page.get_by_role("link", name="D-7781").click()
    error = page.locator(".error .error-message").inner_text()
    assert "403" in error and "DocSpace refused" in error
    page.screenshot(path=shots / "console-failed.png", full_page=True)

    page.get_by_role("button", name="Retry").click()
    assert "Queued again" in page.locator(".notice").inner_text()

    def completed():
        page.reload()
        return page.locator("h1 .badge").inner_text() == "completed"

    wait_until(completed, timeout=30, interval=0.5, message="the onboarding to complete")
    assert "Re-send callback" in page.content()
    assert page.locator("table.timeline").inner_text().count("done") >= 10
    assert "retry" in page.locator("table").last.inner_text() and "console:" in page.content()
    page.screenshot(path=shots / "console-onboarding.png", full_page=True)
    page.goto(f"{stack}/console")
    page.screenshot(path=shots / "console-list.png", full_page=True)

    # The status link, opened by a salesperson's browser, is a page.
    status = page.context.new_page()
    status.goto(answer["status_url"].replace("http://onboarding.test", stack))
    assert "D-7781" in status.content() and "Acme Corporation" in status.content()
    status.screenshot(path=shots / "status-page.png", full_page=True)


def test_without_a_session_every_page_sends_to_sign_in_and_forms_need_their_token(browser, stack):
    context = browser.new_context()
    page = context.new_page()
    for path in ("/console", "/console/events", "/console/onboardings/0123456789abcdef0123456789abcdef",
                 "/console?q=D-1&status=failed"):
        page.goto(f"{stack}{path}")
        assert "/console/login?next=" in page.url, path
        assert page.get_by_label("Admin token").is_visible()
    refused = context.request.post(f"{stack}/console/retry-failed", form={"q": "x"})
    assert refused.status == 400
    page.get_by_label("Admin token").fill("a wrong token")
    page.get_by_role("button", name="Sign in").click()
    assert "That is not the admin token." in page.content()
    page.get_by_label("Admin token").fill(ADMIN_TOKEN)
    page.get_by_role("button", name="Sign in").click()
    # Signed in: a form posted without the page's token is still refused.
    assert context.request.post(f"{stack}/console/retry-failed", form={"q": "x"}).status == 400
    assert context.request.post(f"{stack}/console/retry-failed", form={"csrf_token": "forged"}).status == 400
