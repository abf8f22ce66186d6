"""Pipedrive: webhooks in (source.py), its API (api.py), enrichment and the write-back onto the deal (steps.py).

On when PIPEDRIVE_WEBHOOK_USER is set (with PIPEDRIVE_WEBHOOK_PASSWORD, PIPEDRIVE_API_TOKEN, PIPEDRIVE_API_URL).
Facts: ../shared/reference/crm-apis.md, sections 6-8.
"""

from __future__ import annotations

from onboarding.config import Settings
from onboarding.crm import Crm, LimiterFactory
from onboarding.crm.pipedrive.api import UNLIMITED_WRITES, WINDOW_SECONDS, PipedriveApi
from onboarding.crm.pipedrive.source import NAME, PipedriveSource
from onboarding.crm.pipedrive.steps import DealWriteBack, enrichment, setup


def build(settings: Settings, limiter: LimiterFactory) -> Crm:
    """Pipedrive as the service uses it: one API client shared by the steps and the write-back, kept with every
    other process of the fleet inside the token's burst window."""
    client = PipedriveApi(settings.pipedrive_api_url, settings.pipedrive_api_token, timeout=settings.crm_timeout,
                          limiter=limiter(NAME, (settings.pipedrive_api_url, settings.pipedrive_api_token),
                                          UNLIMITED_WRITES, settings.pipedrive_rate_per_2_seconds, WINDOW_SECONDS,
                                          settings.crm_timeout))
    return Crm(NAME, PipedriveSource(settings.pipedrive_webhook_user, settings.pipedrive_webhook_password),
               DealWriteBack(client), enrichment(client), setup=lambda: setup(client))
