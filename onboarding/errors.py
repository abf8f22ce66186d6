"""The two kinds of failure a step can meet when it calls DocSpace or the CRM."""

from __future__ import annotations


class ServiceError(Exception):
    """A call to DocSpace or the CRM failed; str() is an operator-readable message that never holds a secret."""

    def __init__(self, message: str, endpoint: str, status: int | None = None) -> None:
        """An error from one endpoint, with the HTTP status when there was an answer."""
        super().__init__(message)
        self.message = message
        self.endpoint = endpoint
        self.status = status

    @property
    def kind(self) -> str:
        """transient or permanent."""
        return "transient" if isinstance(self, TransientError) else "permanent"

    def as_dict(self) -> dict:
        """The error as saved with the onboarding."""
        return {"message": self.message, "endpoint": self.endpoint, "status": self.status, "kind": self.kind}


class TransientError(ServiceError):
    """A failure that may pass (connection, timeout, 429, 5xx): retry later, after retry_after if given."""

    def __init__(self, message: str, endpoint: str, status: int | None = None,
                 retry_after: float | None = None) -> None:
        """A transient error, optionally with the server's Retry-After in seconds."""
        super().__init__(message, endpoint, status)
        self.retry_after = retry_after


class PermanentError(ServiceError):
    """A failure retrying will not fix (400, 401, 402, 403, 404...): something must change first."""


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header in seconds (the delta-seconds form; an HTTP date is ignored)."""
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None
