"""The ``/v1`` API's use of the generation service: admit a request, run it, shape OpenAI's answers.

:func:`admit` runs the same :func:`~inference.generation.prepare` as the chat (engine pick,
quota reservation) with ``source="api"`` and the key's prefix; :func:`launch` starts the same
:class:`~inference.generation.Generation`. Its coalesced frames (the first at once, then at
most ``GENERATION_FRAMES_PER_SECOND``) become one ``chat.completion.chunk`` each. The API
stores no messages: the ledger and the audit event are written by the generation's
settlement, as for the chat.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from django.db.models import Min

from accounts import api_keys
from accounts.models import ApiKey
from accounts.policies import served_model_names
from inference.api.errors import NOT_FOUND, PERMISSION, ApiError, engine_failure, from_rejection
from inference.api.requests import CompletionRequest
from inference.audit_events import record_refusal
from inference.generation import STOP_DETACHED, Frame, Generation, Outcome, Prepared, prepare
from inference.models import EngineConfig
from inference.rejections import GenerationRejected
from inference.status import model_choices

logger = logging.getLogger(__name__)

SOURCE = "api"
OWNER = "llm-portal"
# Generations of this process, held here: the event loop keeps only weak references to tasks.
_tasks: set[asyncio.Task[Outcome]] = set()


def list_models(key: ApiKey) -> dict[str, Any]:
    """Return the ready models ``key`` may use, in OpenAI's list shape."""
    created = dict(
        EngineConfig.objects.values_list("served_model_name")
        .annotate(first=Min("created_at"))
        .values_list("served_model_name", "first")
    )
    # A model only an external engine lists (or pins second) has no config named for it.
    engines = dict(EngineConfig.objects.values_list("name", "created_at"))
    data = [
        {
            "id": choice["model"],
            "object": "model",
            "created": int((created.get(choice["model"]) or engines[choice["engine"]]).timestamp()),
            "owned_by": OWNER,
        }
        for choice in model_choices()
        if choice["state"] == "ready" and api_keys.allows_model(key, choice["model"])
    ]
    return {"object": "list", "data": data}


def admit(key: ApiKey, completion: CompletionRequest) -> Prepared:
    """Check the key's model list, then pick an engine and reserve quota (sync, DB).

    Raises :class:`ApiError`: 403 for a model outside the key's list (404 if no engine serves
    it at all), and whatever :func:`~inference.api.errors.from_rejection` maps ``prepare``'s
    refusals to (404 unknown model, 503 not ready, 429 over quota, ...).
    """
    model = completion.sampling.model or ""
    if not api_keys.allows_model(key, model):
        if model not in served_model_names():
            raise ApiError(
                404, f"no engine serves the model {model!r}", type=NOT_FOUND, param="model", code="model_not_found"
            )
        raise ApiError(
            403,
            f"this API key may not use the model {model!r}",
            type=PERMISSION,
            param="model",
            code="model_not_allowed",
        )
    try:
        return prepare(
            key.owner_id,
            completion.messages,
            completion.sampling,
            source=SOURCE,
            api_key_prefix=key.prefix,
            engine_params=completion.engine_params,
            user=key.owner,
        )
    except GenerationRejected as exc:
        # prepare() ran in no outer transaction here, so the refusal's event stands on its own.
        record_refusal(key.owner_id, SOURCE, completion.sampling.model, exc)
        raise from_rejection(exc) from None


class ApiSink:
    """The generation's sink for one request: frames and the outcome go to a queue the response reads."""

    def __init__(self) -> None:
        # None: the generation task ended without an outcome (it failed while settling).
        self.queue: asyncio.Queue[Frame | Outcome | None] = asyncio.Queue()

    async def on_start(self, generation: Generation) -> None:
        return None

    async def on_frame(self, generation: Generation, frame: Frame) -> None:
        self.queue.put_nowait(frame)

    def persist(self, outcome: Outcome) -> None:
        # Nothing to store: the API keeps no conversations; settlement writes ledger and audit.
        return None

    async def on_finish(self, generation: Generation, outcome: Outcome) -> None:
        self.queue.put_nowait(outcome)


def _usage(outcome: Outcome) -> dict[str, Any]:
    prompt = outcome.prompt_tokens or 0
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": outcome.completion_tokens,
        "total_tokens": prompt + outcome.completion_tokens,
    }
    if outcome.reasoning_tokens is not None:
        # As OpenAI and vLLM put it: the part of completion_tokens that was reasoning. Left out
        # when the engine did not count it (a model without a reasoning parser): unknown, not 0.
        usage["completion_tokens_details"] = {"reasoning_tokens": outcome.reasoning_tokens}
    return usage


def _sse(payload: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()


class Completion:
    """One running API generation; read it as SSE chunks (:meth:`events`) or whole (:meth:`result`)."""

    def __init__(self, prepared: Prepared, completion: CompletionRequest) -> None:
        self.sink = ApiSink()
        self.generation = Generation(prepared, self.sink)
        self.include_usage = completion.include_usage
        self.id = f"chatcmpl-{prepared.request.request_id}"
        self.created = int(time.time())
        self.model = prepared.target.served_model
        # A fresh context: the request's (asgiref's per-request thread) ends before the answer does.
        self.task: asyncio.Task[Outcome] = asyncio.create_task(self.generation.run(), context=contextvars.Context())
        _tasks.add(self.task)
        self.task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[Outcome]) -> None:
        _tasks.discard(task)
        if task.cancelled() or task.exception() is not None:
            if not task.cancelled():
                logger.error("API generation %s failed", self.id, exc_info=task.exception())
            self.sink.queue.put_nowait(None)

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }
        if self.include_usage:
            chunk["usage"] = None
        return chunk

    def _abandon(self) -> None:
        """The client went away: stop the generation (vLLM aborts it); settlement still runs."""
        if not self.task.done():
            self.generation.stop(STOP_DETACHED)

    async def events(self) -> AsyncIterator[bytes]:
        """Yield the answer as Server-Sent Events, ending with ``data: [DONE]``.

        A client that disconnects cancels this iterator (Django's ASGI handler does), which
        stops the generation; the partial usage is settled like any other outcome.
        """
        try:
            yield _sse(self._chunk({"role": "assistant", "content": ""}))
            while True:
                item = await self.sink.queue.get()
                if item is None:
                    yield _sse(engine_failure("internal_error", "the portal failed while writing this answer").body())
                    yield b"data: [DONE]\n\n"
                    return
                if isinstance(item, Outcome):
                    break
                pieces = (("content", item.content), ("reasoning", item.reasoning))
                delta = {name: text for name, text in pieces if text}
                yield _sse(self._chunk(delta))
            outcome = item
            if outcome.error_code:
                # Headers went out with 200 long ago: the error is an event, as vLLM and OpenAI send it.
                yield _sse(engine_failure(outcome.error_code, outcome.error_message).body())
            else:
                yield _sse(self._chunk({}, outcome.finish_reason or "stop"))
                if self.include_usage:
                    yield _sse({**self._chunk({}), "choices": [], "usage": _usage(outcome)})
            yield b"data: [DONE]\n\n"
        finally:
            self._abandon()

    async def result(self) -> dict[str, Any]:
        """Wait for the whole answer and return it as a ``chat.completion``; raise :class:`ApiError`."""
        try:
            outcome = await asyncio.shield(self.task)
        except asyncio.CancelledError:
            self._abandon()
            raise
        except Exception as exc:
            # Logged by _ended; the client gets an error in the API's shape, not a 500.
            raise engine_failure("internal_error", "the portal failed while writing this answer") from exc
        if outcome.error_code:
            raise engine_failure(outcome.error_code, outcome.error_message)
        message = {"role": "assistant", "content": outcome.content, "reasoning": outcome.reasoning or None}
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": outcome.finish_reason or "stop"}
            ],
            "usage": _usage(outcome),
        }


def launch(prepared: Prepared, completion: CompletionRequest) -> Completion:
    """Start the generation of an admitted request as a task of this event loop."""
    return Completion(prepared, completion)
