"""The one place that builds the service's objects from its settings: web, worker, CLI and tests all call it.

Nothing else constructs clients: the DocSpace client with its limiter, each CRM that is switched on (its source,
enrichment steps and write-back), status links. Tests pass their own in (e.g. an in-process DocSpace).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from onboarding.config import ConfigError, Settings
from onboarding.crm import Crm, LimiterFactory, hubspot, pipedrive
from onboarding.crm.generic import SignedCallback, StandardWebhooksSource
from onboarding.db import Database
from onboarding.docspace import DocSpace
from onboarding.limits import SLOT_GRACE_SECONDS, FleetLimiter, LimitStore, limit_key
from onboarding.plan import Plan, PlanError, load_plan
from onboarding.sources import Source
from onboarding.status import StatusLinks
from onboarding.steps import Step, plan_steps
from onboarding.workers import Registry, process_name

# Parallel steps one onboarding can have in flight (folders, access and link after the room, then copies).
STEP_THREADS_PER_ONBOARDING = 6


@dataclass
class Services:
    """Everything the web app, the worker and the CLI share, built once from the settings."""

    settings: Settings
    plan: Plan
    db: Database
    status_links: StatusLinks
    docspace: DocSpace
    crms: dict[str, Crm]
    registry: Registry
    limit_store: LimitStore
    # The fleet-wide limiter of every outside API the workers call, by service (for /metrics).
    limiters: dict[str, FleetLimiter] = field(default_factory=dict)
    _steps: dict[str, list[Step]] = field(default_factory=dict)

    @functools.cached_property
    def sources(self) -> dict[str, Source]:
        """The source of every CRM that is on, by name (made once: it is looked up on every delivery)."""
        return {name: crm.source for name, crm in self.crms.items()}

    def steps(self, source: str) -> list[Step]:
        """The steps of an onboarding whose deal came from this source."""
        if source not in self._steps:
            self._steps[source] = plan_steps(self.plan, self.crms[source])
        return self._steps[source]

    def step_names(self, source: str) -> list[str]:
        """The step names of an onboarding from this source (none for a CRM no longer switched on)."""
        return [step.name for step in self.steps(source)] if source in self.crms else []


def bootstrap(settings: Settings, *, db: Database | None = None, docspace: DocSpace | None = None,
              crms: dict[str, Crm] | None = None) -> Services:
    """Build the services; a bad plan raises ConfigError naming the key."""
    try:
        plan = load_plan(settings.onboarding_plan)
    except PlanError as error:
        raise ConfigError(f"ONBOARDING_PLAN {error}") from None
    status_links = StatusLinks(settings.secret_key, settings.public_base_url, settings.status_link_max_age_seconds)
    db = db or Database(settings.database_url)
    registry = Registry(db, settings.lease_seconds)
    store = LimitStore(db)
    limiters: dict[str, FleetLimiter] = {}

    def limiter(service: str, credential: tuple[str, ...], max_writes: int, rate: int, window: float,
                call_timeout: float) -> FleetLimiter:
        """The fleet-wide limiter of one API and credential."""
        limiters[service] = FleetLimiter(store, limit_key(service, *credential), max_concurrent_writes=max_writes,
                                         rate=rate, window_seconds=window,
                                         slot_lease_seconds=call_timeout + SLOT_GRACE_SECONDS, holder=process_name,
                                         live_workers=registry.live_count)
        return limiters[service]

    if docspace is None:
        docspace = DocSpace(settings.docspace_url, settings.docspace_api_key,
                            connect_timeout=settings.docspace_connect_timeout,
                            read_timeout=settings.docspace_read_timeout,
                            limiter=limiter("docspace", (settings.docspace_url, settings.docspace_api_key),
                                            settings.docspace_max_concurrent_writes,
                                            settings.docspace_rate_per_minute, 60.0,
                                            settings.docspace_connect_timeout + settings.docspace_read_timeout),
                            pool_size=settings.worker_concurrency * STEP_THREADS_PER_ONBOARDING)
    return Services(settings=settings, plan=plan, db=db, status_links=status_links, docspace=docspace,
                    crms=crms if crms is not None else build_crms(settings, status_links, limiter),
                    registry=registry, limit_store=store, limiters=limiters)


def build_crms(settings: Settings, status_links: StatusLinks, limiter: LimiterFactory) -> dict[str, Crm]:
    """Every CRM whose credentials are set."""
    crms: list[Crm] = []
    if settings.webhook_secrets:
        crms.append(Crm("generic", StandardWebhooksSource(settings.webhook_secrets,
                                                          settings.signature_tolerance_seconds,
                                                          settings.account_manager_id),
                        SignedCallback(settings.crm_callback_url, settings.crm_callback_secret,
                                       settings.crm_timeout, status_links)))
    if settings.hubspot_client_secret:
        crms.append(hubspot.build(settings, limiter))
    if settings.pipedrive_webhook_user:
        crms.append(pipedrive.build(settings, limiter))
    return {crm.name: crm for crm in crms}
