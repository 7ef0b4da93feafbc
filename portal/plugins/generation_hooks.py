"""Running the generation hooks with failure isolation: ``inference.before_generate`` and ``after_generate``.

``inference.before_generate`` hooks get a :class:`PromptCheck` and may change its messages,
add a notice for the user, or refuse the request. They run in ``order``, one after the other,
in a worker thread, within ``PORTAL_PLUGIN_HOOK_TIMEOUT`` seconds together. They fail
closed: a hook that raises, leaves messages the engine cannot take, or is still running at
the deadline refuses the request (:class:`PromptCheckFailed`) and is logged with its
plugin's name. A thread cannot be killed, so a hook cut off at the deadline finishes in the
background and its result is thrown away.

``inference.after_generate`` hooks get a :class:`GenerationReport` once the answer is
settled. They fail open: an exception is logged with the plugin's name and the next hook
runs.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from django.conf import settings

from portal.hooks import get_hooks
from portal.plugins.config import owner_of

logger = logging.getLogger("portal.plugins")

BEFORE_GENERATE = "inference.before_generate"
AFTER_GENERATE = "inference.after_generate"
ROLES = frozenset({"system", "user", "assistant"})
FAILED_MESSAGE = "a check of this portal failed, so your message was not sent; try again or tell an admin"
SLOW_MESSAGE = "a check of this portal did not answer in time, so your message was not sent; try again"


class PromptRefused(Exception):
    """A ``before_generate`` hook refused the request; ``message`` is shown to the user."""

    def __init__(self, message: str, *, plugin: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.plugin = plugin


class PromptCheckFailed(Exception):
    """A ``before_generate`` hook raised, timed out or broke the messages (fail closed)."""

    def __init__(self, message: str, *, plugin: str) -> None:
        super().__init__(message)
        self.message = message
        self.plugin = plugin


@dataclass
class PromptCheck:
    """What a ``before_generate`` hook sees and may change.

    ``messages`` (``[{"role": ..., "content": ...}]``) is what will be sent to the model; a
    hook may replace or edit it. ``groups`` are the user's group names, read before the
    hooks run so a hook needs no database query for them. ``source`` is ``"chat"`` or
    ``"api"``; ``model`` the requested model (None: any).
    """

    user: Any
    source: str
    model: str | None
    messages: list[dict[str, str]]
    groups: frozenset[str] = frozenset()
    notices: list[str] = field(default_factory=list)

    def refuse(self, message: str) -> NoReturn:
        """Refuse the request; ``message`` tells the user why. Nothing is saved or reserved."""
        raise PromptRefused(message)

    def notify(self, message: str) -> None:
        """Tell the user something about their request (e.g. what was masked and why)."""
        self.notices.append(message)


@dataclass(frozen=True)
class CheckedPrompt:
    """The outcome of the ``before_generate`` hooks: the messages to send and the notices."""

    messages: list[dict[str, str]]
    notices: tuple[str, ...] = ()


@dataclass(frozen=True)
class GenerationReport:
    """What an ``after_generate`` hook sees: one settled answer (read-only)."""

    user_id: int
    source: str
    request_id: str
    model: str
    engine: str
    status: str
    content: str
    prompt_tokens: int | None
    completion_tokens: int
    error_code: str = ""


def check_prompt(user: Any, messages: Sequence[dict[str, str]], *, model: str | None, source: str) -> CheckedPrompt:
    """Run the ``before_generate`` hooks on a copy of ``messages``; return what to send.

    Raises :class:`PromptRefused` when a hook refuses (its message is for the user) and
    :class:`PromptCheckFailed` when a hook raises, times out or leaves invalid messages.
    Without hooks it returns the messages as they are, at no cost.
    """
    hooks = get_hooks(BEFORE_GENERATE)
    if not hooks:
        return CheckedPrompt([dict(message) for message in messages])
    groups = frozenset(user.groups.values_list("name", flat=True)) if getattr(user, "pk", None) else frozenset()
    check = PromptCheck(user, source, model, [dict(message) for message in messages], groups)
    result: dict[str, BaseException | None] = {}
    running: list[str] = [""]

    def work() -> None:
        from django.db import connections

        try:
            for hook in hooks:
                running[0] = owner_of(hook)
                hook(check)
                _check_messages(check.messages, running[0])
            result["error"] = None
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread, which decides
            result["error"] = exc
        finally:
            connections.close_all()  # this thread's own connections, if a hook opened one

    worker = threading.Thread(target=work, name="before_generate", daemon=True)
    worker.start()
    worker.join(settings.PORTAL_PLUGIN_HOOK_TIMEOUT)
    if "error" not in result:
        logger.error("before_generate hook of plugin %s timed out; request refused", running[0])
        raise PromptCheckFailed(SLOW_MESSAGE, plugin=running[0])
    error = result["error"]
    if isinstance(error, PromptRefused):
        error.plugin = running[0]
        logger.info("before_generate hook of plugin %s refused a request", running[0])
        raise error
    if error is not None:
        logger.error("before_generate hook of plugin %s failed; request refused", running[0], exc_info=error)
        raise PromptCheckFailed(FAILED_MESSAGE, plugin=running[0]) from error
    return CheckedPrompt(check.messages, tuple(str(notice) for notice in check.notices))


def _check_messages(messages: Any, plugin: str) -> None:
    if not isinstance(messages, list) or not messages:
        raise TypeError(f"plugin {plugin} left no list of messages")
    for message in messages:
        if not (
            isinstance(message, dict)
            and message.get("role") in ROLES
            and isinstance(message.get("content"), str)
            and set(message) == {"role", "content"}
        ):
            raise TypeError(f"plugin {plugin} left a message that is not {{role, content}}: {message!r:.80}")


def report_generation(report: GenerationReport) -> None:
    """Run the ``after_generate`` hooks with ``report``; each failure is logged and skipped.

    Sync and possibly slow: callers run it off the event loop, after the answer was sent.
    """
    for hook in get_hooks(AFTER_GENERATE):
        try:
            hook(report)
        except Exception:
            logger.exception("after_generate hook of plugin %s failed", owner_of(hook))
