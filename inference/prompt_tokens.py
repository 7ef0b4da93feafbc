"""Count a prompt's tokens before it is sent, for the quota reservation.

Exactly, with the engine's own ``/tokenize`` (the model's tokenizer and chat template), or,
when that fails, with an upper bound that needs no tokenizer:

    bound = UTF-8 bytes of every message's text + 16 tokens per message + 64 tokens

Why it is an upper bound: the tokenizers vLLM serves are byte-level BPE (GPT-2, Llama 3,
gpt-oss, SmolLM) or SentencePiece with byte fallback; every ordinary token stands for at
least one byte of text, so a text of *n* bytes never needs more than *n* tokens. What the
chat template adds (role markers, separators, the generation prompt) is special tokens,
which the per-message and fixed overheads cover generously. The bound is pessimistic (English
is about 4 bytes per token), so it can refuse a prompt that would have fitted a tight
budget, never let one through that did not.

This is a synchronous call: :func:`inference.generation.prepare` runs in a database thread.
"""

from __future__ import annotations

import logging
import threading

import httpx
from django.conf import settings

from inference.engine_address import EngineAddress
from inference.engine_router import EngineTarget

logger = logging.getLogger(__name__)

PER_MESSAGE_OVERHEAD = 16
FIXED_OVERHEAD = 64

# One client per engine address for the process, not one per count: building a client builds
# its SSL context, about 30 ms of CPU per prompt on a loaded 2-core machine against 2 ms for a
# request on a kept client (docs/benchmarks.md). httpx's client is safe to share between threads.
_clients: dict[EngineAddress, httpx.Client] = {}
_clients_lock = threading.Lock()


def _http(address: EngineAddress) -> httpx.Client:
    with _clients_lock:
        client = _clients.get(address)
        if client is None:
            client = _clients[address] = address.client(timeout=settings.TOKENIZE_TIMEOUT)
        return client


def upper_bound(messages: list[dict[str, str]]) -> int:
    """Return a number of tokens the prompt cannot exceed (see the module's docstring)."""
    text_bytes = sum(len(str(message.get("content", "")).encode("utf-8")) for message in messages)
    return text_bytes + PER_MESSAGE_OVERHEAD * len(messages) + FIXED_OVERHEAD


def count_prompt_tokens(target: EngineTarget, messages: list[dict[str, str]]) -> tuple[int, bool]:
    """Return the prompt's token count and whether it is exact.

    Asks ``target``'s ``/tokenize`` with the chat template applied; on any failure (timeout,
    HTTP error, an unexpected answer) logs it and returns :func:`upper_bound`, ``False``.
    Never raises for the engine's sake.
    """
    body = {"model": target.served_model, "messages": messages, "add_generation_prompt": True}
    address = target.address
    try:
        response = _http(address).post(
            address.url("/tokenize"),
            json=body,
            headers={"Authorization": f"Bearer {target.api_key}"},
            timeout=settings.TOKENIZE_TIMEOUT,
        )
        response.raise_for_status()
        count = response.json().get("count")
        if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
            return count, True
        logger.warning("engine %s answered /tokenize without a count", target.name)
    except (httpx.HTTPError, OSError, ValueError, AttributeError) as exc:
        logger.warning("engine %s could not count the prompt (%s); using the upper bound", target.name, exc)
    return upper_bound(messages), False
