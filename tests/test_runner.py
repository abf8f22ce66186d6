"""The retry policy: capped exponential backoff with jitter, never sooner than the server's Retry-After."""

from __future__ import annotations

from onboarding.runner import RetryPolicy

POLICY = RetryPolicy(base_seconds=2, max_seconds=60, max_attempts=12, max_age_seconds=3600)


def test_backoff_doubles_with_jitter_and_is_capped():
    for attempts, full in ((1, 2), (2, 4), (3, 8), (5, 32), (6, 60), (20, 60)):
        delays = [POLICY.delay(attempts, None) for _ in range(200)]
        assert all(full / 2 <= delay <= full for delay in delays), attempts
        assert max(delays) - min(delays) > full / 10  # jittered, not constant


def test_retry_after_is_a_floor():
    assert all(POLICY.delay(1, 30) == 30 for _ in range(50))
    assert all(POLICY.delay(6, 1) >= 30 for _ in range(50))
