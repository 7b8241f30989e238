"""Loader errors, split into terminal (fail the run now) and transient (retry).

Every message says what failed and what to do; none contains a credential.
"""

from __future__ import annotations


class LoaderError(Exception):
    """Terminal: the run fails with this message."""

    code = "LOAD_FAILED"


class AuthError(LoaderError):
    """The API refused the credential (401/403). Retrying cannot help."""

    code = "AUTH_FAILED"


class MalformedResponse(LoaderError):
    """The API answered with something that is not what its contract says."""

    code = "MALFORMED_RESPONSE"


class RequestRejected(LoaderError):
    """A 4xx other than 401/403/429: the request itself is wrong."""

    code = "REQUEST_REJECTED"


class RetriesExhausted(LoaderError):
    """Transient failures went on past the retry bound."""

    code = "RETRIES_EXHAUSTED"


class IncompleteLoad(LoaderError):
    """A full pass stored fewer records than the server reported, and the settings say to fail then."""

    code = "INCOMPLETE_LOAD"


class Cancelled(LoaderError):
    """The run was asked to stop while a request waited or was about to start."""

    code = "CANCELLED"


class TransientError(Exception):
    """Retryable (429, 5xx, connection failure). ``retry_after`` is the server's hint in seconds."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class RateLimited(TransientError):
    """HTTP 429: a CommCare quota (per project space and per user; by minute, hour and day) is used up."""
