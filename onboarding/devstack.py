"""The quick start (bin/quickstart): web + worker on SQLite, with the DocSpace sandbox unless DOCSPACE_URL is set.

Settings already in the environment win. Secrets it has to invent (webhook and callback secrets, admin token,
signing key) are generated once into var/dev.env (mode 0600, never committed) so restarts keep them.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time

import requests

from onboarding.config import PROJECT_DIR

VAR = PROJECT_DIR / "var"
DEV_ENV = VAR / "dev.env"
SANDBOX_MANAGER_ID = "22222222-2222-4222-8222-222222222222"


def _dev_secrets() -> dict[str, str]:
    """The generated development secrets, created on first use (and any a newer version needs, added)."""
    wanted = {
        "WEBHOOK_SECRETS": lambda: "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode(),
        "CRM_CALLBACK_SECRET": lambda: "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode(),
        "ADMIN_TOKEN": lambda: secrets.token_urlsafe(24),
        "SECRET_KEY": lambda: secrets.token_urlsafe(32),
        "SANDBOX_API_KEY": lambda: "sk-sandbox-" + secrets.token_hex(12),
        "HUBSPOT_CLIENT_SECRET": lambda: secrets.token_hex(16),
        "HUBSPOT_ACCESS_TOKEN": lambda: "pat-na1-" + secrets.token_hex(12),
        "PIPEDRIVE_WEBHOOK_PASSWORD": lambda: secrets.token_urlsafe(18),
        "PIPEDRIVE_API_TOKEN": lambda: secrets.token_hex(20),
    }
    if not DEV_ENV.exists():
        VAR.mkdir(exist_ok=True)
        DEV_ENV.touch(mode=0o600)
    pairs = (line.split("=", 1) for line in DEV_ENV.read_text().splitlines() if "=" in line)
    known = {name: value for name, value in pairs}
    missing = {name: make() for name, make in wanted.items() if name not in known}
    if missing:
        with DEV_ENV.open("a") as file:
            file.write("".join(f"{name}={value}\n" for name, value in missing.items()))
    return {**known, **missing}


def _wait_for(url: str, process: subprocess.Popen, name: str, timeout: float = 30) -> None:
    """Wait until url answers 2xx; exit if the process dies first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"quickstart: {name} exited with code {process.returncode}; see its output above")
        try:
            if requests.get(url, timeout=1).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    sys.exit(f"quickstart: {name} did not answer {url} within {timeout:g} s")


def _banner(lines: list[str]) -> None:
    """Print lines in a box, to stand out from the logs."""
    width = max(len(line) for line in lines)
    print("\n" + "#" * (width + 4), file=sys.stderr)
    for line in lines:
        print(f"# {line.ljust(width)} #", file=sys.stderr)
    print("#" * (width + 4) + "\n", file=sys.stderr, flush=True)


def dev_environment() -> tuple[dict[str, str], bool]:
    """The quick start's environment, and whether it uses the sandbox (DOCSPACE_URL not set)."""
    dev = _dev_secrets()
    env = dict(os.environ)
    port = env.setdefault("PORT", "8000")
    for name in ("WEBHOOK_SECRETS", "CRM_CALLBACK_SECRET", "ADMIN_TOKEN", "SECRET_KEY"):
        env.setdefault(name, dev[name])
    env.setdefault("PUBLIC_BASE_URL", f"http://127.0.0.1:{port}")
    env.setdefault("READINESS_DRAIN_SECONDS", "1")
    use_sandbox = not env.get("DOCSPACE_URL")
    if use_sandbox:
        sandbox_url = f"http://127.0.0.1:{env.setdefault('SANDBOX_PORT', '8090')}"
        env["DOCSPACE_URL"] = sandbox_url
        env["DOCSPACE_API_KEY"] = dev["SANDBOX_API_KEY"]
        env.setdefault("ACCOUNT_MANAGER_ID", SANDBOX_MANAGER_ID)
        env.setdefault("CRM_CALLBACK_URL", f"{sandbox_url}/crm/callbacks")
        # The sandbox imitates HubSpot and Pipedrive too: both CRMs are on, against it.
        for name in ("HUBSPOT_CLIENT_SECRET", "HUBSPOT_ACCESS_TOKEN", "PIPEDRIVE_WEBHOOK_PASSWORD",
                     "PIPEDRIVE_API_TOKEN"):
            env.setdefault(name, dev[name])
        env.setdefault("HUBSPOT_API_URL", f"{sandbox_url}/hubspot")
        env.setdefault("PIPEDRIVE_WEBHOOK_USER", "pipedrive")
        env.setdefault("PIPEDRIVE_API_URL", f"{sandbox_url}/pipedrive")
    env.setdefault("CRM_CALLBACK_URL", f"http://127.0.0.1:{port}/crm-callback-not-configured")
    return env, use_sandbox


def main() -> None:
    """Start everything, print how to use it, and stop everything on Ctrl-C or SIGTERM."""
    env, use_sandbox = dev_environment()
    python = sys.executable
    flask = [python, "-m", "flask", "--app", "wsgi"]
    if sys.argv[1:2] == ["sample-request"]:
        source = sys.argv[2] if len(sys.argv) > 2 else "generic"
        sys.exit(subprocess.run([*flask, *sample_request(env, source, use_sandbox)], env=env,
                                cwd=PROJECT_DIR).returncode)
    port = env["PORT"]
    metrics_dir = VAR / "metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)

    children: list[tuple[str, subprocess.Popen]] = []
    if use_sandbox:
        sandbox_url = env["DOCSPACE_URL"]
        sandbox_port = env["SANDBOX_PORT"]
        sandbox = subprocess.Popen([python, "-m", "onboarding.sandbox", "--host", "127.0.0.1", "--port",
                                    sandbox_port, "--api-key", env["DOCSPACE_API_KEY"], "--hubspot-token",
                                    env["HUBSPOT_ACCESS_TOKEN"], "--pipedrive-token", env["PIPEDRIVE_API_TOKEN"]],
                                   env=env, cwd=PROJECT_DIR)
        children.append(("sandbox", sandbox))
        _wait_for(f"{sandbox_url}/_sandbox/state", sandbox, "the sandbox")
        _banner(["DOCSPACE_URL is not set: USING THE LOCAL DOCSPACE SANDBOX at " + sandbox_url,
                 "Nothing is created on a real portal. Rooms, members and links live in memory:",
                 f"  {sandbox_url}/_sandbox/state      CRM callbacks: {sandbox_url}/_sandbox/crm/callbacks",
                 f"  HubSpot deals: {sandbox_url}/_sandbox/hubspot/state   Pipedrive deals: "
                 f"{sandbox_url}/_sandbox/pipedrive/state",
                 "Set DOCSPACE_URL, DOCSPACE_API_KEY and CRM_CALLBACK_URL to use a real portal (README.md)."])

    upgrade = subprocess.run([*flask, "db", "upgrade"], env=env, cwd=PROJECT_DIR)
    if upgrade.returncode != 0:
        _stop(children)
        sys.exit(upgrade.returncode)
    if use_sandbox:  # what the write-backs need in the sandbox's CRMs, as an operator would run it
        for crm in ("hubspot", "pipedrive"):
            subprocess.run([*flask, crm, "setup"], env=env, cwd=PROJECT_DIR, capture_output=True)
    # The preflight an operator runs against a real portal, here against what this quick start points at.
    check = subprocess.run([*flask, "check"], env=env, cwd=PROJECT_DIR, capture_output=True, text=True)
    _banner(["flask --app wsgi check " + ("passes:" if check.returncode == 0 else "FAILS:"),
             *[line for line in check.stdout.splitlines() if line.strip()]])
    web = subprocess.Popen([python, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "--bind",
                            f"127.0.0.1:{port}", "wsgi:app"], env=env, cwd=PROJECT_DIR)
    children.append(("web", web))
    children.append(("worker", subprocess.Popen([*flask, "worker"], env=env, cwd=PROJECT_DIR)))
    _wait_for(f"http://127.0.0.1:{port}/readyz", web, "the web process")

    _banner([f"Ready: web on http://127.0.0.1:{port} (SQLite: {env.get('DATABASE_URL') or 'var/onboarding.db'})",
             "Paste a signed sample request (valid 5 minutes; for new ones: bin/quickstart sample-request "
             "[generic|hubspot|pipedrive]):"])
    for source in ("generic", "hubspot", "pipedrive") if use_sandbox else ("generic",):
        sample = subprocess.run([*flask, *sample_request(env, source, use_sandbox)], env=env, cwd=PROJECT_DIR,
                                capture_output=True, text=True)
        print(f"# {source}:\n" + (sample.stdout.strip() or sample.stderr.strip()), file=sys.stderr)
    _banner(["Then watch it:",
             f"  curl -s -H 'Authorization: Bearer {env['ADMIN_TOKEN']}' http://127.0.0.1:{port}/api/onboardings",
             f"  or the console: http://127.0.0.1:{port}/console (admin token: ADMIN_TOKEN in var/dev.env)",
             "Ctrl-C stops everything. Secrets of this dev setup: var/dev.env"])

    stop = {"asked": False}

    def on_signal(*_args) -> None:
        stop["asked"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    while not stop["asked"]:
        for name, child in children:
            if child.poll() is not None:
                print(f"quickstart: {name} exited with code {child.returncode}; stopping", file=sys.stderr)
                stop["asked"] = True
        time.sleep(0.5)
    _stop(children)


def sample_request(env: dict[str, str], source: str, use_sandbox: bool) -> list[str]:
    """The flask arguments printing a sample request from source; for a CRM, about a new won deal made in the
    sandbox (owned by its room admin, so the owner becomes the room manager)."""
    if source == "generic" or not use_sandbox:
        return ["sample-request", "--source", source]
    control = f"{env['DOCSPACE_URL']}/_sandbox/{source}"
    suffix = secrets.token_hex(2)
    if source == "hubspot":
        owner = requests.post(f"{control}/owners", json={"email": "alice@sandbox.example", "firstName": "Alice",
                                                         "lastName": "Manager"}, timeout=5).json()
        deal = requests.post(f"{control}/deals", timeout=5, json={
            "dealname": f"Acme annual plan {suffix}", "hubspot_owner_id": owner["id"],
            "company": {"name": f"Acme Corporation {suffix}"},
            "contacts": [{"email": f"buyer-{suffix}@acme.example.com", "firstname": "Bea", "lastname": "Buyer"}]})
    else:
        user = requests.post(f"{control}/users", json={"name": "Alice Manager", "email": "alice@sandbox.example"},
                             timeout=5).json()
        deal = requests.post(f"{control}/deals", timeout=5, json={
            "title": f"Acme renewal {suffix}", "owner_id": user["id"], "organization": {"name": f"Acme {suffix}"},
            "person": {"name": "Bea Buyer", "emails": [{"value": f"bea-{suffix}@acme.example.com", "primary": True}]}})
    return ["sample-request", "--source", source, "--deal", str(deal.json()["id"])]


def _stop(children: list[tuple[str, subprocess.Popen]]) -> None:
    """SIGTERM every child, newest first, then wait for each."""
    for _, child in reversed(children):
        if child.poll() is None:
            child.terminate()
    for _, child in reversed(children):
        try:
            child.wait(40)
        except subprocess.TimeoutExpired:
            child.kill()


if __name__ == "__main__":
    main()
