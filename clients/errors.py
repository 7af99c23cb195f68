"""Typed errors of the Python client; each carries the server's message (and field, status)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

    from service.schemas import JobPublic


class PruneServeError(Exception):
    """Base of every error the client raises on purpose."""

    def __init__(self, detail: str, *, status: int | None = None, field: str | None = None):
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.field = field

    def __str__(self) -> str:
        text = self.detail
        if self.field and not text.startswith(self.field):
            text = f"{self.field}: {text}"
        return f"{self.status} {text}" if self.status else text

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": type(self).__name__,
            "status": self.status,
            "detail": self.detail,
            "field": self.field,
        }


class AuthError(PruneServeError):
    """401/403: missing, unknown or insufficient API key."""


class NotFound(PruneServeError):
    """404: no such job, artifact or dataset for this key's tenant."""


class ValidationError(PruneServeError):
    """422: the request is invalid; `.field` names the culprit when the server says."""


class ServerError(PruneServeError):
    """5xx, after retries where the call was safe to retry."""


class ConnectionFailed(PruneServeError):
    """The service could not be reached (after retries where the call was safe to retry)."""


class IntegrityError(PruneServeError):
    """A downloaded file does not match the size or sha256 the server listed."""

    def __init__(self, detail: str, *, path: str, expected: str, actual: str):
        super().__init__(detail)
        self.path = path
        self.expected = expected
        self.actual = actual


class JobEnded(PruneServeError):
    """Base of the errors `wait` raises for a job that did not succeed; `.job` is its last state."""

    def __init__(self, detail: str, job: JobPublic):
        super().__init__(detail)
        self.job = job


class JobFailed(JobEnded):
    """The job ended `failed`; `.error` is the job's error (type and message)."""

    def __init__(self, job: JobPublic):
        err = job.error
        message = f"{err.type}: {err.message}" if err else "no error recorded"
        super().__init__(f"job {job.id} failed: {message}", job)
        self.error = err


class JobCancelled(JobEnded):
    """The job ended `cancelled`."""

    def __init__(self, job: JobPublic):
        super().__init__(f"job {job.id} was cancelled", job)


class WaitTimeout(JobEnded):
    """`wait` gave up before the job ended; the job itself goes on."""

    def __init__(self, job: JobPublic, timeout: float):
        super().__init__(f"job {job.id} still {job.state.value} after {timeout:g}s", job)
        self.timeout = timeout


def error_from_response(resp: httpx.Response) -> PruneServeError:
    """Map an error response to its typed error, keeping the server's detail and field."""
    detail, field = _parse_body(resp)
    status = resp.status_code
    if status in (401, 403):
        cls: type[PruneServeError] = AuthError
    elif status == 404:
        cls = NotFound
    elif status == 422:
        cls = ValidationError
    elif status >= 500:
        cls = ServerError
    else:
        cls = PruneServeError
    return cls(detail, status=status, field=field)


def _parse_body(resp: httpx.Response) -> tuple[str, str | None]:
    """(detail, field) from an ErrorBody (every error the server sends), or plain text from
    something in front of it (a proxy's 502 page)."""
    try:
        body = resp.json()
    except ValueError:
        text = resp.text.strip().splitlines()
        return (text[0] if text else resp.reason_phrase or "error"), None
    if not isinstance(body, dict):
        return str(body), None
    detail, field = body.get("detail"), body.get("field")
    return str(detail or resp.reason_phrase or "error"), field
