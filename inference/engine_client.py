"""The portal's one way to talk to a model: streamed chat completions from a ready engine.

One pooled ``httpx.AsyncClient`` per event loop (Daphne runs one loop per process). The
pool is never closed on purpose: the web process ends with its loop, and the operating system
closes its connections; a loop that closed (one per test) has its client dropped. The
connect, first-token and between-chunk timeouts are separate settings, because a long
prompt may take a while to prefill, but a stream that stalls mid-answer is broken.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from django.conf import settings

from inference.engine_address import EngineAddress
from inference.engine_router import EngineTarget


@dataclass
class ChatRequest:
    """One chat completion: structured messages; the engine applies the model's template.

    Sent as it is: ``reasoning_effort`` is left out by whoever builds the request for an
    engine whose model does not reason (:func:`inference.generation.prepare`).
    """

    messages: list[dict[str, str]]
    max_tokens: int
    temperature: float | None = None
    top_p: float | None = None
    reasoning_effort: str | None = None
    request_id: str | None = None
    priority: int | None = None  # sent only to engines with priority scheduling
    # Further OpenAI parameters, already validated by the caller (the /v1 API: stop, seed, ...).
    engine_params: dict[str, Any] = field(default_factory=dict)


@dataclass
class ChatDelta:
    """A piece of the answer: text, reasoning text, the finish reason, or the final usage."""

    content: str = ""
    reasoning: str = ""
    finish_reason: str | None = None
    usage: dict[str, int] | None = None


class EngineError(Exception):
    """The engine could not answer.

    ``code`` is one of 'engine_unavailable' (the engine does not accept connections: it
    stopped between the pick and the request), 'engine_timeout', 'engine_error' (vLLM
    answered with an HTTP error; ``status`` is its status code and ``message`` its
    explanation), 'engine_disconnected' (the stream broke off mid-answer).
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


@dataclass
class _Pool:
    # One client per event loop, socket and CA bundle: a managed engine's socket needs its own
    # transport, an external engine may have its own CA; URLs without either share one.
    clients: dict[tuple[asyncio.AbstractEventLoop, str, str], httpx.AsyncClient] = field(default_factory=dict)


_pool = _Pool()


def _client(address: EngineAddress) -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    for other in [known for known in _pool.clients if known[0].is_closed()]:
        del _pool.clients[other]
    key = (loop, address.socket_path, address.ca_bundle)
    client = _pool.clients.get(key)
    if client is None or client.is_closed:
        # Read timeouts are enforced per chunk in stream_chat; httpx only bounds connecting.
        timeout = httpx.Timeout(connect=settings.ENGINE_CONNECT_TIMEOUT, read=None, write=30.0, pool=30.0)
        limits = httpx.Limits(max_connections=512, max_keepalive_connections=64)
        client = address.async_client(timeout=timeout, limits=limits)
        _pool.clients[key] = client
    return client


def _body(request: ChatRequest, target: EngineTarget) -> dict[str, Any]:
    body: dict[str, Any] = {
        **request.engine_params,
        "model": target.served_model,
        "messages": request.messages,
        "max_tokens": request.max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.reasoning_effort is not None:
        body["reasoning_effort"] = request.reasoning_effort
    if request.priority is not None and target.priority_scheduling:
        body["priority"] = request.priority
    return body


def _error_message(raw: bytes, status: int) -> str:
    try:
        payload = json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace").strip()[:500] or f"HTTP {status}"
    if isinstance(payload, dict):
        error = payload.get("error", payload)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:500]
        if payload.get("message"):
            return str(payload["message"])[:500]
    return f"HTTP {status}"


def _delta(chunk: dict[str, Any]) -> ChatDelta | None:
    usage = chunk.get("usage")
    choices = chunk.get("choices") or []
    delta = ChatDelta()
    if choices:
        choice = choices[0]
        piece = choice.get("delta") or {}
        delta.content = piece.get("content") or ""
        delta.reasoning = piece.get("reasoning") or piece.get("reasoning_content") or ""
        delta.finish_reason = choice.get("finish_reason")
    if isinstance(usage, dict) and not choices:
        delta.usage = {key: int(usage.get(key) or 0) for key in ("prompt_tokens", "completion_tokens", "total_tokens")}
        # Part of completion_tokens: vLLM counts the reasoning of a reasoning parser's model here.
        details = usage.get("completion_tokens_details")
        if isinstance(details, dict) and details.get("reasoning_tokens") is not None:
            delta.usage["reasoning_tokens"] = int(details["reasoning_tokens"])
    if delta.content or delta.reasoning or delta.finish_reason or delta.usage:
        return delta
    return None


async def stream_chat(
    request: ChatRequest, target: EngineTarget, pace: Callable[[], Awaitable[None]] | None = None
) -> AsyncIterator[ChatDelta]:
    """Stream one chat completion from ``target`` (the engine picked when the request was prepared).

    Yields deltas as they arrive; the last one carries ``usage``. Raises :class:`EngineError`.
    Closing the generator closes the HTTP response, which makes vLLM abort the request.
    ``pace``, when given, is awaited before each read from the engine's connection: the
    caller may hold the next read back while what it has would not be sent yet anyway, so
    that one read takes several events (see ``Generation._pace``).
    """
    headers = {"Authorization": f"Bearer {target.api_key}"}
    if request.request_id:
        headers["X-Request-Id"] = request.request_id
    address = target.address
    try:
        client = _client(address)
    except (OSError, ssl.SSLError) as exc:  # an external engine's CA bundle went missing since the probe
        raise EngineError("engine_unavailable", f"the engine {target.name} cannot be reached securely") from exc
    outgoing = client.build_request(
        "POST", address.url("/v1/chat/completions"), json=_body(request, target), headers=headers
    )
    first_token_timeout = settings.ENGINE_FIRST_TOKEN_TIMEOUT
    try:
        async with asyncio.timeout(first_token_timeout):
            response = await client.send(outgoing, stream=True)
    except httpx.ConnectTimeout as exc:
        raise EngineError("engine_timeout", f"the engine {target.name} did not accept the connection in time") from exc
    except TimeoutError as exc:
        raise EngineError("engine_timeout", f"the engine {target.name} did not answer in time") from exc
    except httpx.ConnectError as exc:
        raise EngineError(
            "engine_unavailable", f"the engine {target.name} is not answering — try again shortly"
        ) from exc
    except httpx.HTTPError as exc:
        raise EngineError("engine_disconnected", f"the engine {target.name} dropped the connection") from exc
    try:
        if response.status_code >= 400:
            raw = await response.aread()
            raise EngineError("engine_error", _error_message(raw, response.status_code), status=response.status_code)
        async for delta in _read_stream(response, target, first_token_timeout, pace):
            yield delta
    finally:
        await response.aclose()


async def _read_stream(
    response: httpx.Response,
    target: EngineTarget,
    first_token_timeout: float,
    pace: Callable[[], Awaitable[None]] | None,
) -> AsyncIterator[ChatDelta]:
    # The hot path of every relayed token. Reads are bytes as they come off the socket (one
    # timeout per read, not per line: vLLM sends several events per read under load), split
    # into lines here; no text decoding of the whole stream, only json.loads of each event.
    reads = response.aiter_bytes()
    loop = asyncio.get_running_loop()
    first_deadline = loop.time() + first_token_timeout
    got_token = False
    partial = b""
    while True:
        if pace is not None:
            await pace()  # outside the read's timeout: holding a read back is not the engine stalling
        wait = settings.ENGINE_CHUNK_TIMEOUT if got_token else max(0.0, first_deadline - loop.time())
        try:
            async with asyncio.timeout(wait):
                read = await anext(reads)
        except StopAsyncIteration:
            raise EngineError(
                "engine_disconnected", f"the engine {target.name} ended the stream before the answer was complete"
            ) from None
        except TimeoutError:
            what = "between two chunks" if got_token else "before the first token"
            raise EngineError("engine_timeout", f"the engine {target.name} stalled {what}") from None
        except httpx.HTTPError as exc:
            raise EngineError("engine_disconnected", f"the engine {target.name} dropped the stream") from exc
        lines = (partial + read).split(b"\n")
        partial = lines.pop()  # an event cut off by this read (maybe mid-character) waits for the next
        for line in lines:
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                return
            delta = _event(data, target)
            if delta is None:
                continue
            if delta.content or delta.reasoning:
                got_token = True
            yield delta


def _event(data: bytes, target: EngineTarget) -> ChatDelta | None:
    """One SSE ``data:`` payload as a delta (None when it carries nothing); raise an engine error."""
    try:
        chunk = json.loads(data)
    except ValueError:
        return None
    if isinstance(chunk, dict) and "error" in chunk:
        error = chunk["error"]
        message = str(error.get("message") if isinstance(error, dict) else error)
        raise EngineError("engine_error", message, status=error.get("code") if isinstance(error, dict) else None)
    return _delta(chunk) if isinstance(chunk, dict) else None
