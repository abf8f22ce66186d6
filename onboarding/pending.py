"""Events left pending at intake, judged by the worker once it has asked their CRM.

A HubSpot deal moving into a stage of a custom pipeline says only the stage's id; whether that stage is
closed-won is in the portal's pipeline settings, and the web process never waits on HubSpot's API to answer
(HubSpot gives a receiver 5 s, and a slow HubSpot must not delay or lose a won deal). So such an event is
recorded as pending and acknowledged at once, and a thread of each worker judges it here: a won deal gets its
onboarding through the usual intake (deduped like any delivery), anything else is recorded as ignored, with the
reason. While the CRM is down the event stays pending and is tried again; it is never dropped.
"""

from __future__ import annotations

import logging
import threading

from onboarding import intake, logs
from onboarding.bootstrap import Services
from onboarding.errors import ServiceError

log = logging.getLogger("onboarding.pending")

INTERVAL_SECONDS = 1.0
BACKOFF_SECONDS = 5.0
BATCH = 50


class PendingEvents:
    """Judges pending events, a batch every second, in a thread of the worker."""

    def __init__(self, services: Services) -> None:
        """Judge the pending events of the services' CRMs."""
        self.services = services
        # Only a CRM whose source leaves events pending (HubSpot) needs this; without one, nothing to watch.
        self.active = any(crm.resolve is not None for crm in services.crms.values())
        # Until the first pass has looked, assume there may be some (a `worker --once` must not stop before).
        self._waiting = self.active

    def waiting(self) -> bool:
        """Whether the last pass left events pending."""
        return self._waiting

    def run(self, stopping: threading.Event) -> None:
        """Judge pending events until stopping is set."""
        while self.active and not stopping.is_set():
            wait = INTERVAL_SECONDS
            try:
                if not self.resolve():
                    wait = BACKOFF_SECONDS
            except Exception:
                log.exception("cannot judge pending events; trying again in %s s", BACKOFF_SECONDS)
                wait = BACKOFF_SECONDS
            stopping.wait(wait)

    def resolve(self) -> bool:
        """Judge one batch; False when a CRM could not be asked (the rest waits for the next pass)."""
        events = intake.pending_events(self.services.db, BATCH)
        if not events:
            self._waiting = False
            return True
        try:
            for event_id, source, body in events:
                crm = self.services.crms.get(source)
                if crm is None or crm.resolve is None:
                    continue  # its CRM is off in this worker: one that has it judges the event
                with logs.bound(event_id=event_id, source=source):
                    try:
                        verdict = crm.resolve(body)
                    except ServiceError as error:
                        log.warning("cannot judge a pending event yet: %s", error.message,
                                    extra={"outcome": "pending"})
                        return False
                    receipt = intake.reprocess_event(self.services.db, event_id, verdict)
                    outcome = receipt.outcome if receipt else "gone"
                    with logs.bound(onboarding_id=receipt.onboarding_id if receipt else None):
                        log.info("pending event judged: %s", outcome, extra={"outcome": outcome})
            return True
        finally:
            self._waiting = bool(intake.pending_events(self.services.db, 1))
