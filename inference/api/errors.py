"""The API's errors in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``.

Every refusal of the portal (a bad key, a bad body, the ledger, the engine) is mapped to one
status here, so the views never pick a status themselves.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from django.http import JsonResponse
from django.utils import timezone

from accounts.api_keys import ApiKeyRefused
from inference.rejections import GenerationRejected

INVALID_REQUEST = "invalid_request_error"
AUTHENTICATION = "authentication_error"
PERMISSION = "permission_error"
NOT_FOUND = "not_found_error"
RATE_LIMIT = "rate_limit_error"
UNAVAILABLE = "service_unavailable_error"
SERVER = "server_error"

# GenerationRejected codes (generation, chat checks, the quota ledger) and their status.
_REJECTION_STATUS = {
    "invalid_params": (400, INVALID_REQUEST),
    "bad_request": (400, INVALID_REQUEST),
    "empty_content": (400, INVALID_REQUEST),
    "content_too_long": (400, INVALID_REQUEST),
    "model_not_allowed": (403, PERMISSION),
    # A plugin's prompt check refused (its message says why), or failed or timed out (fail closed).
    "refused_by_plugin": (403, PERMISSION),
    "plugin_failed": (503, UNAVAILABLE),
    "quota_exceeded": (429, RATE_LIMIT),
    "rate_limited": (429, RATE_LIMIT),
    "too_many_answers": (429, RATE_LIMIT),
}


class ApiError(Exception):
    """A request the API answers with an error: status, OpenAI's fields, extra fields, headers."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = INVALID_REQUEST,
        param: str | None = None,
        code: str | None = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.extra = extra or {}
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The JSON body (also sent as an SSE ``error`` event once a stream has begun)."""
        error = {"message": self.message, "type": self.type, "param": self.param, "code": self.code}
        return {"error": {**error, **self.extra}}

    def response(self) -> JsonResponse:
        response = JsonResponse(self.body(), status=self.status)
        for name, value in self.headers.items():
            response[name] = value
        return response


def invalid(message: str, param: str | None = None, code: str = "invalid_request") -> ApiError:
    """A 400 for a body the API cannot accept."""
    return ApiError(400, message, param=param, code=code)


def from_refusal(exc: ApiKeyRefused) -> ApiError:
    """Map a key that did not authenticate: 401, or 403 for an owner who may no longer use the API."""
    if exc.code == "not_member":
        return ApiError(403, exc.message, type=PERMISSION, code=exc.code)
    return ApiError(401, exc.message, type=AUTHENTICATION, code=exc.code)


def _retry_after(details: dict[str, Any]) -> int | None:
    value = details.get("retry_after")
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return max(1, math.ceil(value))
    resets_at = details.get("resets_at")
    if isinstance(resets_at, str):
        try:
            resets_at = datetime.fromisoformat(resets_at)
        except ValueError:
            return None
    if isinstance(resets_at, datetime) and resets_at.tzinfo is not None:
        return max(1, math.ceil((resets_at - timezone.now()).total_seconds()))
    return None


def _jsonable(details: dict[str, Any]) -> dict[str, Any]:
    return {
        name: value.isoformat() if isinstance(value, datetime) else value
        for name, value in details.items()
        if name != "field"
    }


def from_rejection(exc: GenerationRejected) -> ApiError:
    """Map a refusal of the generation service (or the ledger behind it) to its status.

    ``engine_unavailable`` is 404 for a model no engine serves and 503 otherwise (with the
    engine's ``state`` and ``progress``); a 429 carries ``Retry-After`` when the refusal says
    when to retry. An unknown code is a 400: a refusal is never a server error.
    """
    details = dict(exc.details)
    param = details.get("field")
    if exc.code == "engine_unavailable":
        if details.get("state") == "unknown_model":
            return ApiError(404, exc.message, type=NOT_FOUND, param="model", code="model_not_found")
        extra = {"state": details.get("state"), "progress": details.get("progress")}
        return ApiError(
            503, exc.message, type=UNAVAILABLE, code="engine_unavailable", extra=extra, headers={"Retry-After": "10"}
        )
    status, kind = _REJECTION_STATUS.get(exc.code, (400, INVALID_REQUEST))
    headers = {}
    if status == 429:
        retry_after = _retry_after(details)
        headers["Retry-After"] = str(retry_after if retry_after is not None else 60)
    return ApiError(
        status, exc.message, type=kind, param=param, code=exc.code, extra=_jsonable(details), headers=headers
    )


def engine_failure(code: str, message: str) -> ApiError:
    """Map the error of a generation that ended before any text, for a non-streamed answer.

    ``engine_error`` means vLLM answered the request with an HTTP error. The portal checked
    everything it could, so what is left is the engine refusing this request (a prompt
    longer than its context, tools it was not started for): a 400 with vLLM's message. The
    engine down or stalled is a 503; the portal failing is a 502, never a 500.
    """
    if code == "engine_error":
        return ApiError(400, f"the engine refused the request: {message}", code="engine_rejected")
    if code in ("engine_unavailable", "engine_timeout", "engine_disconnected"):
        return ApiError(503, message, type=UNAVAILABLE, code=code, headers={"Retry-After": "10"})
    return ApiError(502, message, type=SERVER, code=code or "internal_error")
