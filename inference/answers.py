"""How an answer stands: the status words every part of the portal uses, defined once.

The chat stores them on its messages (``chat.models.Message.Status`` is this class), the
``done`` frame and the ``/v1`` API report them, and the generation service settles every
answer with one of the final ones. An *interrupted* answer says why in its error code: one
of the reasons below, or the engine's error.
"""

from __future__ import annotations

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
