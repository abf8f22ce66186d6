"""HubSpot: app webhooks in (source.py), its API (api.py), enrichment and the write-back onto the deal (steps.py).

On when HUBSPOT_CLIENT_SECRET is set (with HUBSPOT_ACCESS_TOKEN). Facts: ../shared/reference/crm-apis.md and
webhook-signatures.md, section 4.
"""

from __future__ import annotations

from onboarding.config import Settings
from onboarding.crm import Crm, LimiterFactory
from onboarding.crm.hubspot.api import UNLIMITED_WRITES, WINDOW_SECONDS, HubSpotApi
from onboarding.crm.hubspot.source import NAME, HubSpotSource
from onboarding.crm.hubspot.steps import DealWriteBack, enrichment, setup


def build(settings: Settings, limiter: LimiterFactory) -> Crm:
    """HubSpot as the service uses it: one API client shared by the source, the steps and the write-back, kept
    with every other process of the fleet inside the account's limit."""
    client = HubSpotApi(settings.hubspot_api_url, settings.hubspot_access_token, timeout=settings.crm_timeout,
                        limiter=limiter(NAME, (settings.hubspot_api_url, settings.hubspot_access_token),
                                        UNLIMITED_WRITES, settings.hubspot_rate_per_10_seconds, WINDOW_SECONDS,
                                        settings.crm_timeout))
    source = HubSpotSource(settings.hubspot_client_secret, settings.public_base_url,
                           settings.signature_tolerance_seconds, client)
    return Crm(NAME, source, DealWriteBack(client), enrichment(client), resolve=source.resolve,
               setup=lambda: setup(client))
