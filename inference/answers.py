"""The words and shapes every client uses for an answer: its status, why it stopped, its tokens.

Defined once here: the chat stores the status on its messages (``chat.models.Message.Status``
is :class:`AnswerStatus`), the ``done`` frame and the ``/v1`` API report it, and the
generation service settles every answer with one of the final ones. An *interrupted* answer
says why in its error code: one of the reasons below, or the engine's error.
"""

from __future__ import annotations

from typing import Any

from django.db import models


class AnswerStatus(models.TextChoices):
    """Where an answer is: being written, or how it ended."""

    STREAMING = "streaming", "streaming"
    COMPLETE = "complete", "complete"
    STOPPED = "stopped", "stopped by the user"
    INTERRUPTED = "interrupted", "interrupted"
    ERROR = "error", "failed"


# Why an answer was interrupted, when it was not the engine (stored as its error code).
DETACHED = "detached"  # nobody watched it for the grace period, so it was stopped
CANCELLED = "cancelled"  # the web process writing it cancelled it (shutting down)
LOST = "lost"  # the web process writing it went away (its heartbeat stopped)


def token_usage(prompt_tokens: int | None, completion_tokens: int | None, estimated: bool) -> dict[str, Any]:
    """Return token counts as clients see them (``estimated``: counted from the stream)."""
    counted = prompt_tokens is not None or completion_tokens is not None
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": (prompt_tokens or 0) + (completion_tokens or 0) if counted else None,
        "estimated": estimated,
    }
