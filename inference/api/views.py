"""The OpenAI-compatible endpoints under /v1: authenticate the key, validate, one service call.

Async views: a streamed answer is an async iterator, so it holds no thread while it runs.
No session and no CSRF: the only credential is ``Authorization: Bearer <key>``.
"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import close_old_connections
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from accounts import api_keys
from accounts.api_keys import ApiKeyRefused
from accounts.models import ApiKey
from inference.api import completions
from inference.api.errors import NOT_FOUND, ApiError, from_refusal
from inference.api.requests import CompletionRequest, parse_completion, parse_json
from inference.generation import Prepared, one_policy_read


def _key(request: HttpRequest) -> ApiKey:
    try:
        return api_keys.authenticate(request.headers.get("Authorization"))
    except ApiKeyRefused as exc:
        raise from_refusal(exc) from None


def _body(request: HttpRequest) -> bytes:
    """Read the body, refusing one over ``API_MAX_BODY_BYTES`` (413) before it is parsed."""
    limit: int = settings.API_MAX_BODY_BYTES
    too_large = ApiError(413, f"the body is larger than {limit} bytes", code="body_too_large")
    declared = request.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    # read() rather than .body: Django's own upload limit would answer first, with a 400.
    raw = request.read(limit + 1)
    if len(raw) > limit:
        raise too_large
    return raw


def _method(request: HttpRequest, allowed: str) -> None:
    if request.method != allowed:
        raise ApiError(405, f"use {allowed} here", code="method_not_allowed", headers={"Allow": allowed})


@csrf_exempt
@login_not_required
async def models(request: HttpRequest) -> HttpResponse:
    """GET /v1/models: the ready models this key may use."""
    try:
        _method(request, "GET")
        listed = await sync_to_async(lambda: completions.list_models(_key(request)))()
    except ApiError as exc:
        return exc.response()
    return JsonResponse(listed)


def _admit(request: HttpRequest) -> tuple[CompletionRequest, Prepared]:
    """Authenticate, parse and admit a completion request, in one trip to a thread.

    One ``sync_to_async`` call, not one per step: each call waits for a thread behind every
    other request's, and at 32 streams those waits were most of the time to first token.
    Raises :class:`ApiError`.
    """
    key = _key(request)
    with one_policy_read():
        # The parameters' ranges depend on the owner's policy (max tokens per answer).
        completion = parse_completion(parse_json(_body(request)), key.owner)
        prepared = completions.admit(key, completion)
    # The answer may stream for minutes; the database connection this request's thread opened
    # would be held until it ends (PostgreSQL refused new clients at 256 streams, bench/relay.py).
    close_old_connections()
    return completion, prepared


@csrf_exempt
@login_not_required
async def chat_completions(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    """POST /v1/chat/completions: one answer, streamed as Server-Sent Events or whole."""
    try:
        _method(request, "POST")
        completion, prepared = await sync_to_async(_admit)(request)
    except ApiError as exc:
        return exc.response()
    running = completions.launch(prepared, completion)
    if completion.stream:
        response = StreamingHttpResponse(running.events(), content_type="text/event-stream")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
        return response
    try:
        return JsonResponse(await running.result())
    except ApiError as exc:
        return exc.response()


@csrf_exempt
@login_not_required
async def not_found(request: HttpRequest, path: str = "") -> HttpResponse:
    """Anything else under /v1 (no other part of vLLM is reachable through the portal)."""
    message = f"the portal's API has no {request.path}: it serves /v1/models and /v1/chat/completions"
    return ApiError(404, message, type=NOT_FOUND, code="unknown_url").response()
