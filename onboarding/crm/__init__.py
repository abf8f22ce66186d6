"""The CRMs the service speaks with, a place each: generic (any sender of a signed "deal.won"), hubspot, pipedrive.

A CRM is one Source (verify its requests, decide "won", dedupe), the enrichment steps that turn its ids into a
client and an owner (none for the generic webhook, whose payload names them), and one WriteBack that tells the
deal its room is ready. bootstrap.py builds the CRMs whose settings are present; a fourth CRM is a fourth folder
here and one line there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from onboarding.domain import Room
from onboarding.sources import Source, Verdict

if TYPE_CHECKING:
    from onboarding.limits import FleetLimiter
    from onboarding.queue import Work
    from onboarding.steps import Step

# Makes the fleet-wide limiter of one API: (service, credential parts, max concurrent writes, rate, window seconds,
# call timeout seconds) -> FleetLimiter. bootstrap.py owns the store it shares.
LimiterFactory = Callable[[str, tuple[str, ...], int, int, float, float], "FleetLimiter"]


class WriteBack(Protocol):
    """Tells a CRM about an onboarding, in the product's terms; each adapter builds its own messages."""

    step: str  # the name of the step that runs room_ready
    # Whether room_ready creates something no retry may create twice (a note): the step then records its attempt
    # first, and a later attempt is told it is not the first.
    looks_before_creating: bool

    def room_ready(self, onboarding: Work, room: Room, *, first_try: bool) -> dict:
        """Tell the CRM the room is ready; return what to save as the step's result, or raise a ServiceError.
        first_try: no earlier run ever began this step, so nothing it creates can exist yet."""

    def onboarding_failed(self, onboarding: Work, error: dict) -> None:
        """Tell the CRM the onboarding failed (one attempt); raise a ServiceError if that failed."""


@dataclass(frozen=True)
class Crm:
    """One CRM as the service uses it."""

    name: str
    source: Source
    write_back: WriteBack
    enrichment: tuple[Step, ...] = ()
    # Judges an event its source left pending (it needs the CRM's API, which the web process never waits on).
    resolve: Callable[[bytes], Verdict] | None = None
    # Creates what the write-back needs in the CRM (idempotently); says what it did (`flask --app wsgi <name> setup`).
    setup: Callable[[], list[str]] | None = None
