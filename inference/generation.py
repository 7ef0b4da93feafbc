"""The generation service: one answer from an engine, streamed in frames and settled exactly once.

Shared by the browser chat (``chat/streams.py``) and the ``/v1`` API. The caller:

1. parses the request's parameters with :func:`inference.sampling.parse_sampling` (one set
   of ranges for both),
2. calls :func:`prepare` in a sync context: it picks a ready engine and reserves quota, and
   refuses with :class:`GenerationRejected` before anything was saved,
3. runs :meth:`Generation.run` as an asyncio task and receives the start, the coalesced
   frames and the outcome through its :class:`GenerationSink`. :meth:`Generation.stop` stops
   the generation: the upstream HTTP stream is closed (vLLM aborts the request), and the
   partial answer is settled like any other outcome. Cancelling the task from outside (the
   process shutting down) does the same, settles it as *interrupted*, and the task ends
   cancelled.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncGenerator, Mapping
from contextlib import AbstractContextManager, aclosing
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, cast

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from accounts.ledger import QuotaRefused, check_model, remaining, reserve, settle, settle_lost
from accounts.models import Reservation
from accounts.policies import EffectivePolicy, effective_policy, read_once
from inference.answers import CANCELLED, DETACHED, AnswerStatus, token_usage
from inference.audit_events import record_generation
from inference.engine_client import ChatDelta, ChatRequest, EngineError, stream_chat
from inference.engine_router import EngineTarget, EngineUnavailable, pick_engine
from inference.prompt_tokens import count_prompt_tokens
from inference.rejections import GenerationRejected
from inference.sampling import Sampling
from portal import metrics, outage
from portal.audit.request_context import set_request_id
from portal.hooks import get_hooks
from portal.plugins import generation_hooks
from portal.plugins.generation_hooks import CheckedPrompt, GenerationReport

logger = logging.getLogger(__name__)

# Why a generation was stopped from outside (see Generation.stop); a detached answer keeps
# the reason as its error code.
STOP_BY_USER = "by_user"
STOP_DETACHED = DETACHED
# How long before a frame's slot the held-back read from the engine runs (Generation._pace):
# time enough to parse what came in before the writer takes it.
PACE_MARGIN = 0.005


@dataclass(frozen=True)
class Prepared:
    """A request that may start: the engine picked for it and the request to send."""

    user_id: int
    source: str
    target: EngineTarget
    request: ChatRequest
    # The /v1 API's key (its public prefix), for the ledger's channel and the audit event.
    api_key_prefix: str | None = None
    prompt_tokens: int = 0
    reservation: Reservation | None = None
    # What the plugins' prompt checks told the user (e.g. what was masked and why).
    notices: tuple[str, ...] = ()
    # The policy the reservation was admitted under; settlement reports what is left by it.
    policy: EffectivePolicy | None = None
    # The user's row when the caller loaded it for this request (the audit event's actor).
    user: Any = None


# --- SEAM: quota ledger and audit trail -----------------------------------------------
# The only places that call the usage ledger (accounts/ledger.py) and, when it lands, the
# audit trail (portal).


def one_policy_read() -> AbstractContextManager[None]:
    """A block (one request's admission) in which each user's policy is read from the database once."""
    return read_once()


def _user(user_id: int) -> Any:
    # The policy and the ledger need the user's id only: no query for the row itself.
    return get_user_model()(pk=user_id)


def _rejected(exc: QuotaRefused, source: str) -> GenerationRejected:
    metrics.refused(exc.code, source)
    return GenerationRejected(exc.code, exc.message, **exc.details())


def reserve_usage(prepared: Prepared, policy: EffectivePolicy) -> Prepared:
    """Reserve the prompt and answer tokens of ``prepared`` and a concurrency slot.

    Returns ``prepared`` with its reservation, and its ``max_tokens`` lowered to what the
    budget grants. Raises :class:`GenerationRejected` with the ledger's code
    (``quota_exceeded``, ``too_many_answers``, ``rate_limited``, ``model_not_allowed``),
    ``limit``, ``retry_after`` and ``resets_at``.
    """
    try:
        reservation = reserve(
            _user(prepared.user_id),
            model=prepared.target.served_model,
            channel=prepared.source,
            prompt_tokens=prepared.prompt_tokens,
            max_tokens=prepared.request.max_tokens,
            request_id=prepared.request.request_id or uuid.uuid4().hex,
            policy=policy,
        )
    except QuotaRefused as exc:
        raise _rejected(exc, prepared.source) from exc
    prepared.request.max_tokens = reservation.max_tokens
    return replace(prepared, reservation=reservation, policy=policy)


def settle_usage(prepared: Prepared, outcome: Outcome) -> dict[str, Any] | None:
    """Correct the reservation to actual use (SEAM: and write one audit event); return what is left.

    Runs inside the settlement transaction, so the ledger, the stored answer and the audit
    event commit together: a failed audit write raises and rolls the settlement back. The
    ledger is settled before the event is appended (lock order: ledger, then audit chain).
    Without usage from the engine, the prompt counts only when text was generated (the
    engine then certainly read it) and the answer counts one token per chunk.
    """
    reservation = prepared.reservation
    left = None
    if reservation is not None:
        prompt = outcome.prompt_tokens
        if prompt is None:
            prompt = reservation.prompt_tokens if outcome.completion_tokens else 0
        completion = outcome.completion_tokens
        left = settle(
            reservation,
            prompt_tokens=prompt,
            completion_tokens=completion,
            outcome=outcome.status,
            policy=prepared.policy,
        )
    record_generation(prepared, outcome)
    return left


def remaining_usage(user_id: int) -> dict[str, Any]:
    """Return what is left of the user's budgets now (a re-loaded ``done`` frame's ``remaining``)."""
    return remaining(_user(user_id))


def settle_lost_usage(request_ids: list[str]) -> int:
    """Settle the reservations of answers found lost (their web process died); return how many."""
    return settle_lost(request_ids)


# --- Preparing ----------------------------------------------------------------------------


def check_prompt(user: Any, messages: list[dict[str, str]], sampling: Sampling, *, source: str) -> CheckedPrompt:
    """Run the plugins' ``inference.before_generate`` hooks on ``messages`` (sync, no lock held).

    ``user`` is the user or their id. Returns the messages to send and the notices for the
    user. Raises :class:`GenerationRejected`: ``refused_by_plugin`` with the plugin's message,
    or ``plugin_failed`` when a check raised or timed out (fail closed). Call it outside a
    transaction: hooks may be slow and write on their own database connection.
    """
    if not hasattr(user, "pk"):
        user = get_user_model().objects.get(pk=user)
    try:
        return generation_hooks.check_prompt(user, messages, model=sampling.model, source=source)
    except generation_hooks.PromptRefused as exc:
        raise GenerationRejected("refused_by_plugin", exc.message, plugin=exc.plugin) from exc
    except generation_hooks.PromptCheckFailed as exc:
        raise GenerationRejected("plugin_failed", exc.message, plugin=exc.plugin) from exc


def prepare(
    user_id: int,
    messages: list[dict[str, str]],
    sampling: Sampling,
    *,
    source: str,
    api_key_prefix: str | None = None,
    engine_params: Mapping[str, Any] | None = None,
    checked: CheckedPrompt | None = None,
    user: Any = None,
) -> Prepared:
    """Check the prompt, pick a ready engine the user may use, count the prompt and reserve the user's tokens.

    ``engine_params`` are further OpenAI parameters the caller validated (sent as they are);
    ``api_key_prefix`` names the API key of a ``source="api"`` request. ``checked`` is the
    result of :func:`check_prompt` when the caller ran it already (the chat runs it before
    taking its locks); without it the plugins' checks run here first, before anything is
    reserved: call it outside a transaction then. ``user`` is the user's row when the caller
    has just loaded it (the API's key owner): the checks and the audit event then read it
    no more.

    Raises :class:`GenerationRejected`: ``refused_by_plugin`` or ``plugin_failed`` (see
    :func:`check_prompt`), ``model_not_allowed`` for a model outside the user's policy,
    ``engine_unavailable`` (with the engine's ``state``, ``progress`` and ``model``) when no
    engine is ready, or what the ledger refuses (see :func:`reserve_usage`). The caller records
    the refusal with :func:`inference.audit_events.record_refusal` once its own transaction
    has ended (here it would roll back with the refused turn).
    """
    policy = effective_policy(user if user is not None else _user(user_id))
    if sampling.model is not None:
        try:
            check_model(policy, sampling.model)
        except QuotaRefused as exc:
            raise _rejected(exc, source) from exc
    if checked is None:
        checked = check_prompt(user if user is not None else user_id, messages, sampling, source=source)
    try:
        target = pick_engine(sampling.model, None if policy.all_models else policy.model_names)
    except EngineUnavailable as exc:
        metrics.refused("engine_unavailable", source)
        raise GenerationRejected(
            "engine_unavailable", exc.message, state=exc.state, progress=exc.progress, model=exc.model
        ) from exc
    request = ChatRequest(
        messages=checked.messages,
        max_tokens=sampling.max_tokens,
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        reasoning_effort=sampling.reasoning_effort if target.reasoning else None,
        request_id=uuid.uuid4().hex,
        priority=policy.priority if target.priority_scheduling else None,
        engine_params=dict(engine_params or {}),
    )
    # The prompt as it is sent (after the plugins' checks) is what the ledger reserves.
    prompt_tokens, _ = count_prompt_tokens(target, checked.messages)
    prepared = Prepared(
        user_id=user_id,
        source=source,
        target=target,
        request=request,
        api_key_prefix=api_key_prefix,
        prompt_tokens=prompt_tokens,
        notices=checked.notices,
        user=user,
    )
    return reserve_usage(prepared, policy)


# --- Running ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    """Text that arrived since the previous frame; ``seq`` counts frames from 1."""

    seq: int
    content: str
    reasoning: str


@dataclass
class Outcome:
    """How a generation ended, with everything settlement stores."""

    status: str
    content: str
    reasoning: str
    model: str
    engine: str
    request_id: str
    finish_reason: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int = 0
    # The part of completion_tokens that was reasoning, when the engine counted it (else None).
    reasoning_tokens: int | None = None
    usage_estimated: bool = False
    ttft_ms: int | None = None
    duration_ms: int = 0
    error_code: str = ""
    error_message: str = ""
    remaining: dict[str, Any] | None = None

    def usage(self) -> dict[str, Any]:
        """Token counts as the clients see them (``estimated`` when the engine sent none)."""
        return token_usage(self.prompt_tokens, self.completion_tokens, self.usage_estimated)


class GenerationSink(Protocol):
    """Where a generation reports to (the chat's stream, the API's SSE response)."""

    async def on_start(self, generation: Generation) -> None: ...

    async def on_frame(self, generation: Generation, frame: Frame) -> None: ...

    def persist(self, outcome: Outcome) -> None:
        """Store the outcome; runs inside the settlement transaction (sync, may use the DB)."""

    async def on_finish(self, generation: Generation, outcome: Outcome) -> None: ...


@dataclass
class Generation:
    """One answer being generated; :meth:`run` it as a task and cancel that task to stop it."""

    prepared: Prepared
    sink: GenerationSink
    stop_reason: str | None = None
    _task: asyncio.Task[Any] | None = None
    _settling: bool = False
    # What was sent in frames so far: a re-attaching viewer gets this, then frames after seq.
    seq: int = 0
    sent_content: str = ""
    sent_reasoning: str = ""
    _pending_content: list[str] = field(default_factory=list)
    _pending_reasoning: list[str] = field(default_factory=list)
    _wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    _next_frame_at: float = 0.0  # loop time at which the writer may send its next frame
    _closing: bool = False
    _token_chunks: int = 0
    _started: float = 0.0
    _first_token_at: float | None = None
    _finish_reason: str = ""
    _usage: dict[str, int] | None = None

    def stop(self, reason: str) -> None:
        """Stop the generation: cancel its task, which closes the upstream stream.

        ``reason`` is ``STOP_BY_USER`` (the answer is *stopped*) or ``STOP_DETACHED``
        (nobody watched: *interrupted*); a cancellation without a reason (shutdown) is
        *interrupted* too. The first reason wins; once settlement has begun,
        stopping does nothing.
        """
        if self.stop_reason is not None or self._settling:
            return
        self.stop_reason = reason
        if self._task is not None:
            self._task.cancel()

    async def run(self) -> Outcome:
        """Stream the answer, send frames, and settle exactly once however it ends."""
        self._task = asyncio.current_task()
        self._started = time.monotonic()
        metrics.generation_started(self.prepared.source)
        # This task's log lines carry the request id (a context variable: per task).
        set_request_id(self.prepared.request.request_id or "")
        writer = asyncio.create_task(self._write_frames())
        status, error_code, error_message = AnswerStatus.COMPLETE, "", ""
        cancelled = False
        try:
            await self.sink.on_start(self)
            if self.stop_reason is not None:
                # Stopped before it began: nothing to ask the engine.
                raise asyncio.CancelledError
            # stream_chat is an async generator; aclosing() makes leaving early close it.
            upstream = cast(
                AsyncGenerator[ChatDelta, None], stream_chat(self.prepared.request, self.prepared.target, self._pace)
            )
            async with aclosing(upstream) as stream:
                async for delta in stream:
                    self._take(delta)
        except asyncio.CancelledError:
            # Stop, nobody watching, or shutdown: leaving the ``async with`` closed the upstream stream.
            cancelled = True
            if self.stop_reason == STOP_BY_USER:
                status = AnswerStatus.STOPPED
            elif self.stop_reason == STOP_DETACHED:
                status, error_code = AnswerStatus.INTERRUPTED, DETACHED
                error_message = "nobody was watching, so the answer was stopped"
            else:
                status, error_code = AnswerStatus.INTERRUPTED, CANCELLED
                error_message = "the portal stopped writing this answer (it was shutting down)"
        except EngineError as exc:
            status = AnswerStatus.INTERRUPTED if self._token_chunks else AnswerStatus.ERROR
            error_code, error_message = exc.code, exc.message
        except Exception:
            logger.exception("generation %s failed", self.prepared.request.request_id)
            status = AnswerStatus.INTERRUPTED if self._token_chunks else AnswerStatus.ERROR
            error_code, error_message = "internal_error", "the portal failed while streaming this answer"
        self._settling = True
        outcome = await asyncio.shield(self._finish(writer, status, error_code, error_message))
        if cancelled and self.stop_reason is None:
            # Not our stop(): whoever cancelled the task expects it to end cancelled.
            raise asyncio.CancelledError
        if cancelled and self._task is not None and self._task.cancelling():
            # Our own stop() was handled here (the answer is settled); the task ends normally.
            self._task.uncancel()
        return outcome

    async def _finish(self, writer: asyncio.Task[None], status: str, error_code: str, error_message: str) -> Outcome:
        self._closing = True
        self._wakeup.set()
        await writer
        # Text that arrived while the writer sent its last frame goes out now.
        rest = self._next_frame()
        if rest is not None:
            await self._send(rest)
        outcome = self._outcome(status, error_code, error_message)
        try:
            await self._settle_when_the_database_answers(outcome)
        finally:
            # Also when settlement failed: the active-generations gauge must come down.
            metrics.generation_finished(
                channel=self.prepared.source,
                model=outcome.model,
                outcome=outcome.status,
                prompt_tokens=outcome.prompt_tokens,
                completion_tokens=outcome.completion_tokens,
                ttft_seconds=outcome.ttft_ms / 1000 if outcome.ttft_ms is not None else None,
                duration_seconds=outcome.duration_ms / 1000,
            )
        await self.sink.on_finish(self, outcome)
        _report_later(self.prepared, outcome)
        return outcome

    def _take(self, delta: ChatDelta) -> None:
        if delta.content or delta.reasoning:
            if self._first_token_at is None:
                self._first_token_at = time.monotonic()
            self._token_chunks += 1
            if delta.content:
                self._pending_content.append(delta.content)
            if delta.reasoning:
                self._pending_reasoning.append(delta.reasoning)
            self._wakeup.set()
        if delta.finish_reason:
            self._finish_reason = delta.finish_reason
        if delta.usage:
            self._usage = delta.usage

    def _next_frame(self) -> Frame | None:
        if not self._pending_content and not self._pending_reasoning:
            return None
        content, reasoning = "".join(self._pending_content), "".join(self._pending_reasoning)
        self._pending_content.clear()
        self._pending_reasoning.clear()
        # No await between taking the text and counting it: snapshots stay consistent with seq.
        self.seq += 1
        self.sent_content += content
        self.sent_reasoning += reasoning
        return Frame(self.seq, content, reasoning)

    async def _write_frames(self) -> None:
        """Send the first text at once, then at most GENERATION_FRAMES_PER_SECOND frames."""
        interval = 1.0 / settings.GENERATION_FRAMES_PER_SECOND
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            frame = self._next_frame()
            if frame is not None:
                await self._send(frame)
            if self._closing:
                return
            self._next_frame_at = loop.time() + interval
            await asyncio.sleep(interval)

    async def _pace(self) -> None:
        """Hold the next read from the engine back until just before the next frame may go out.

        Text read now would wait for that frame anyway; read just before it instead, and that
        one read (one trip through the socket and the HTTP client) takes every event that came
        in meanwhile rather than one each. The first token of a frame is read the moment it
        comes, so no text is delayed; what arrives in the last ``PACE_MARGIN`` before the frame
        is read as it comes. (Only time decides: the HTTP client may hold several events of one
        read, and those must not wait for the next frame.)
        """
        if not self._pending_content and not self._pending_reasoning:
            return
        wait = self._next_frame_at - PACE_MARGIN - asyncio.get_running_loop().time()
        if wait > 0:
            await asyncio.sleep(wait)

    async def _send(self, frame: Frame) -> None:
        try:
            await self.sink.on_frame(self, frame)
        except Exception:
            # A lost frame must not lose the answer: settlement still stores all of it.
            logger.exception("sending a frame of %s failed", self.prepared.request.request_id)

    def _outcome(self, status: str, error_code: str, error_message: str) -> Outcome:
        now = time.monotonic()
        usage = self._usage
        return Outcome(
            status=status,
            content=self.sent_content,
            reasoning=self.sent_reasoning,
            model=self.prepared.target.served_model,
            engine=self.prepared.target.name,
            request_id=self.prepared.request.request_id or "",
            finish_reason=self._finish_reason,
            prompt_tokens=usage["prompt_tokens"] if usage else None,
            # vLLM streams about one token per chunk: the estimate when it sent no usage (stop).
            completion_tokens=usage["completion_tokens"] if usage else self._token_chunks,
            reasoning_tokens=usage.get("reasoning_tokens") if usage else None,
            usage_estimated=usage is None,
            ttft_ms=round((self._first_token_at - self._started) * 1000) if self._first_token_at else None,
            duration_ms=round((now - self._started) * 1000),
            error_code=error_code,
            error_message=error_message[:500],
        )

    async def _settle_when_the_database_answers(self, outcome: Outcome) -> None:
        # The answer is only in memory until settled: during a database outage keep it and
        # retry (the settlement transaction rolled back whole each time), for up to
        # GENERATION_SETTLE_RETRY_SECONDS; then raise as any other failed settlement.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settings.GENERATION_SETTLE_RETRY_SECONDS
        pause = 0.25
        while True:
            try:
                await database_sync_to_async(self._settle)(outcome)
                return
            except outage.DATABASE_ERRORS as exc:
                if loop.time() + pause > deadline:
                    raise
                logger.warning("settling %s waits for the database: %s", outcome.request_id, exc)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 2.0)

    def _settle(self, outcome: Outcome) -> None:
        with transaction.atomic():
            # Lock order (docs/architecture.md): the answer (conversation level), then the
            # ledger, then the audit chain, as begin_turn takes them.
            self.sink.persist(outcome)
            outcome.remaining = settle_usage(self.prepared, outcome)


# The after_generate reports still running; the event loop keeps only weak references.
_reports: set[asyncio.Task[None]] = set()


def _report_later(prepared: Prepared, outcome: Outcome) -> None:
    """Run the plugins' ``inference.after_generate`` hooks in a task, after the done frame went out."""
    if not get_hooks(generation_hooks.AFTER_GENERATE):
        return
    report = GenerationReport(
        user_id=prepared.user_id,
        source=prepared.source,
        request_id=outcome.request_id,
        model=outcome.model,
        engine=outcome.engine,
        status=outcome.status,
        content=outcome.content,
        prompt_tokens=outcome.prompt_tokens,
        completion_tokens=outcome.completion_tokens,
        error_code=outcome.error_code,
    )
    task = asyncio.create_task(
        # Not the thread-sensitive executor: a slow hook must not hold up other database work.
        database_sync_to_async(generation_hooks.report_generation, thread_sensitive=False)(report)
    )
    _reports.add(task)
    task.add_done_callback(_reports.discard)
