"""Identifiers: UUIDv7, so rows land in creation order at the end of their indexes."""

from __future__ import annotations

import time
import uuid

from onboarding.models import new_id


def test_ids_are_uuid7_hex():
    ids = {new_id() for _ in range(1000)}
    assert len(ids) == 1000
    for value in ids:
        parsed = uuid.UUID(value)
        assert len(value) == 32 and parsed.hex == value
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122


def test_ids_begin_with_their_creation_time_and_sort_by_it():
    before = time.time_ns() // 1_000_000
    first = new_id()
    time.sleep(0.002)
    second = new_id()
    after = time.time_ns() // 1_000_000
    assert before <= int(first[:12], 16) <= int(second[:12], 16) <= after
    assert first < second
