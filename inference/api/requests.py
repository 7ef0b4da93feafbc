"""Read a ``/v1/chat/completions`` body: what the portal accepts, what it passes on, and 400s.

The sampling parameters the chat also has go through the generation service's own
:func:`~inference.generation.parse_sampling`, so the API and the chat share one set of ranges.
The OpenAI parameters only the API has are checked for shape here and sent to vLLM as they
are. Anything else is refused: nothing of vLLM is reachable that is not listed.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from inference.api.errors import invalid
from inference.rejections import GenerationRejected
from inference.sampling import Sampling, parse_sampling
from inference.text_checks import storable_text

SAMPLING = ("model", "temperature", "top_p", "max_tokens", "reasoning_effort")
PASSED_THROUGH = ("stop", "seed", "presence_penalty", "frequency_penalty", "response_format", "tools", "tool_choice")
OTHER = ("messages", "stream", "stream_options", "max_completion_tokens", "user", "n")
ACCEPTED = frozenset(SAMPLING + PASSED_THROUGH + OTHER)
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
# Message fields that are accepted and not forwarded: earlier reasoning (not part of the next
# prompt, as in the chat), a participant name and a refusal text.
DROPPED_MESSAGE_FIELDS = frozenset({"name", "reasoning", "reasoning_content", "refusal"})
MAX_MESSAGES = 2000
MAX_STOP = 4
MAX_TOOLS = 128
SEED_RANGE = (-(2**63), 2**63 - 1)
TOOL_CHOICES = ("none", "auto", "required")
RESPONSE_FORMATS = ("text", "json_object", "json_schema")


@dataclass(frozen=True)
class CompletionRequest:
    """A valid request: the messages for the engine, its sampling, and what goes to vLLM as is."""

    messages: list[dict[str, str]]
    sampling: Sampling
    engine_params: dict[str, Any]
    stream: bool
    include_usage: bool


def parse_json(raw: bytes) -> Any:
    """Decode the body; a 400 when it is not UTF-8 JSON."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise invalid("the body is not valid JSON", code="invalid_json") from None


def parse_completion(body: Any, user: Any) -> CompletionRequest:
    """Validate a chat completion body for ``user``; raise a 400 :class:`ApiError` naming the field."""
    if not isinstance(body, dict):
        raise invalid("the body must be a JSON object")
    unknown = sorted(set(body) - ACCEPTED)
    if unknown:
        raise invalid(f"unknown parameter {unknown[0][:60]!r}: the portal does not pass it on", param=unknown[0][:60])
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise invalid("model is required: one of the names GET /v1/models lists", param="model")
    n = body.get("n")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise invalid("n must be a whole number of at least 1", param="n")
    if n is not None and n > 1:
        raise invalid("n > 1 is not supported: ask for one choice per request", param="n", code="unsupported")
    stream = _flag(body, "stream")
    include_usage = _stream_options(body.get("stream_options"), stream)
    user_field = body.get("user")
    if user_field is not None and (not storable_text(user_field) or len(user_field) > 256):
        raise invalid("user must be text of at most 256 characters", param="user")
    raw_sampling = {name: body.get(name) for name in SAMPLING}
    raw_sampling["max_tokens"] = _max_tokens(body)
    try:
        sampling = parse_sampling(raw_sampling, user)
    except GenerationRejected as exc:
        raise invalid(exc.message, param=exc.details.get("field")) from None
    return CompletionRequest(
        messages=_messages(body.get("messages")),
        sampling=sampling,
        engine_params=_passed_through(body),
        stream=stream,
        include_usage=include_usage,
    )


def _flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise invalid(f"{name} must be true or false", param=name)
    return bool(value)


def _stream_options(value: Any, stream: bool) -> bool:
    if value is None:
        return False
    if not isinstance(value, dict) or set(value) - {"include_usage"}:
        raise invalid("stream_options may only hold include_usage", param="stream_options")
    if not stream:
        raise invalid("stream_options needs stream: true", param="stream_options")
    include = value.get("include_usage")
    if include is not None and not isinstance(include, bool):
        raise invalid("stream_options.include_usage must be true or false", param="stream_options")
    return bool(include)


def _max_tokens(body: dict[str, Any]) -> Any:
    """``max_completion_tokens`` is OpenAI's newer name for ``max_tokens``; both may not disagree."""
    old, new = body.get("max_tokens"), body.get("max_completion_tokens")
    if old is not None and new is not None and old != new:
        raise invalid("max_tokens and max_completion_tokens differ: send one", param="max_completion_tokens")
    return new if new is not None else old


def _content(value: Any, index: int) -> str:
    param = f"messages[{index}].content"
    if isinstance(value, list):
        parts = []
        for part in value:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise invalid("only text content parts ({'type': 'text', 'text': ...}) are supported", param=param)
            parts.append(part["text"])
        value = "\n".join(parts)
    if not isinstance(value, str):
        raise invalid("content must be text or a list of text parts", param=param)
    if not storable_text(value):
        raise invalid("content contains characters that cannot be sent (NUL or a lone surrogate)", param=param)
    return value


def _messages(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise invalid("messages must be a non-empty list", param="messages")
    if len(value) > MAX_MESSAGES:
        raise invalid(f"messages may hold at most {MAX_MESSAGES} messages", param="messages")
    messages = []
    for index, message in enumerate(value):
        if not isinstance(message, dict):
            raise invalid("each message must be an object", param=f"messages[{index}]")
        role = message.get("role")
        if not isinstance(role, str) or role not in ROLES:
            shown = str(role)[:40]
            raise invalid(
                f"unknown role {shown!r}: use system, developer, user or assistant", param=f"messages[{index}].role"
            )
        extra = sorted(set(message) - {"role", "content"} - DROPPED_MESSAGE_FIELDS)
        if extra:
            field = extra[0][:60]
            raise invalid(f"message field {field!r} is not supported", param=f"messages[{index}].{field}")
        content = message.get("content")
        if content is None and role == "assistant":
            content = ""
        text = _content(content, index)
        # An earlier answer without text adds nothing to the prompt (the chat leaves them out too).
        if role == "assistant" and not text:
            continue
        messages.append({"role": ROLES[role], "content": text})
    if not any(message["content"].strip() for message in messages if message["role"] != "assistant"):
        raise invalid("the messages hold no text to answer", param="messages", code="empty_messages")
    return messages


def _penalty(body: dict[str, Any], name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not -2 <= value <= 2:
        raise invalid(f"{name} must be a number from -2 to 2", param=name)
    if isinstance(value, float) and not math.isfinite(value):
        raise invalid(f"{name} must be a number from -2 to 2", param=name)
    return float(value)


def _stop(value: Any) -> list[str] | None:
    if value is None:
        return None
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_STOP:
        raise invalid(f"stop must be a string or a list of 1 to {MAX_STOP} strings", param="stop")
    for item in items:
        if not isinstance(item, str) or not item or len(item) > 200 or not storable_text(item):
            raise invalid("each stop sequence must be non-empty text of at most 200 characters", param="stop")
    return items


def _seed(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not SEED_RANGE[0] <= value <= SEED_RANGE[1]:
        raise invalid("seed must be a whole number that fits in 64 bits", param="seed")
    return value


def _response_format(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or value.get("type") not in RESPONSE_FORMATS:
        raise invalid(
            "response_format must be an object whose type is text, json_object or json_schema", param="response_format"
        )
    if value["type"] == "json_schema" and not isinstance(value.get("json_schema"), dict):
        raise invalid("response_format json_schema needs a json_schema object", param="response_format")
    return value


def _function(value: Any) -> bool:
    function = value.get("function") if isinstance(value, dict) else None
    return (
        isinstance(value, dict)
        and value.get("type") == "function"
        and isinstance(function, dict)
        and isinstance(function.get("name"), str)
        and bool(function["name"])
    )


def _tools(value: Any) -> list[Any] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > MAX_TOOLS or not all(_function(tool) for tool in value):
        shape = "{'type': 'function', 'function': {'name': ...}}"
        raise invalid(f"tools must be a list of at most {MAX_TOOLS} {shape}", param="tools")
    return value


def _tool_choice(value: Any, tools: list[Any] | None) -> Any:
    if value is None:
        return None
    if value not in TOOL_CHOICES and not _function(value):
        raise invalid("tool_choice must be none, auto, required or a named function", param="tool_choice")
    if value != "none" and not tools:
        raise invalid("tool_choice needs tools", param="tool_choice")
    return value


def _passed_through(body: dict[str, Any]) -> dict[str, Any]:
    tools = _tools(body.get("tools"))
    params = {
        "stop": _stop(body.get("stop")),
        "seed": _seed(body.get("seed")),
        "presence_penalty": _penalty(body, "presence_penalty"),
        "frequency_penalty": _penalty(body, "frequency_penalty"),
        "response_format": _response_format(body.get("response_format")),
        "tools": tools,
        "tool_choice": _tool_choice(body.get("tool_choice"), tools),
    }
    return {name: value for name, value in params.items() if value is not None}
