"""The allow-list of extra ``vllm serve`` flags an engine config may carry, and its validator.

Admins may add flags to an engine, but only flags on :data:`ALLOWED_FLAGS`, each with its
value checked here. Flags that would open the engine to the network, change its key, load
code, or log prompts are refused with the reason; flags that have a field of their own are
refused with the field's name; everything else is refused as unknown.

A leaf module (nothing of the portal imported), so the engine config's ``extra_flags`` field
can use :func:`validate_extra_flags` as its validator: every way of saving a config checks the
flags, not only the admin form. ``inference.launch_command`` reads them again at launch.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError

Check = Callable[[str], str | None]


def _integer(low: int, high: int) -> Check:
    def check(value: str) -> str | None:
        if not re.fullmatch(r"-?\d+", value):
            return "needs a whole number"
        if not low <= int(value) <= high:
            return f"must be between {low} and {high}"
        return None

    return check


def _number(low: float, high: float) -> Check:
    def check(value: str) -> str | None:
        try:
            number = float(value)
        except ValueError:
            return "needs a number"
        if not low <= number <= high:
            return f"must be between {low} and {high}"
        return None

    return check


def _choice(*words: str) -> Check:
    def check(value: str) -> str | None:
        return None if value in words else f"must be one of: {', '.join(words)}"

    return check


def _word(value: str) -> str | None:
    return None if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,99}", value) else "must be a simple name"


def _json_object(value: str) -> str | None:
    try:
        parsed = json.loads(value)
    except ValueError:
        return "must be a JSON object"
    return None if isinstance(parsed, dict) else "must be a JSON object"


def ray_address_problem(address: str) -> str | None:
    """Why ``address`` (``PORTAL_ENGINE_RAY_ADDRESS``, ``IP:PORT``) cannot host Ray; None when it can.

    Ray's runtime has no authentication: whoever reaches its ports runs code in the engine.
    So it is accepted only at a private IP address (RFC 1918, unique-local IPv6, loopback),
    given as an address rather than a name that could resolve elsewhere.
    """
    if not address:
        return (
            "Ray starts a runtime without authentication; it is allowed only for multi-node serving "
            "set up on purpose: set PORTAL_ENGINE_RAY_ADDRESS to the private IP:PORT of your Ray head "
            "(docs/engine.md), or use mp"
        )
    host, colon, port = address.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return f"PORTAL_ENGINE_RAY_ADDRESS {address!r} must be IP:PORT with a private IP address"
    if not colon or not port.isdigit() or not 0 < int(port) < 65536:
        return f"PORTAL_ENGINE_RAY_ADDRESS {address!r} must be IP:PORT"
    if ip.is_unspecified or not (ip.is_private or ip.is_loopback):
        return f"PORTAL_ENGINE_RAY_ADDRESS {address!r} is not a private address; Ray must not face a public network"
    return None


def _executor_backend(value: str) -> str | None:
    problem = _choice("mp", "ray", "uni")(value)
    if problem or value != "ray":
        return problem
    return ray_address_problem(settings.ENGINE_RAY_ADDRESS)


@dataclass(frozen=True)
class FlagSpec:
    """An allowed flag: ``check`` validates its value, or it is a switch without one."""

    help: str
    check: Check | None = None

    @property
    def takes_value(self) -> bool:
        return self.check is not None


ALLOWED_FLAGS: dict[str, FlagSpec] = {
    "--enforce-eager": FlagSpec("skip torch.compile and CUDA graphs (faster start, on CPU recommended)"),
    "--max-num-batched-tokens": FlagSpec("tokens per scheduler step", _integer(16, 10_485_760)),
    "--block-size": FlagSpec("KV cache block size in tokens", _choice("8", "16", "32", "64", "128")),
    "--seed": FlagSpec("random seed", _integer(0, 2**31 - 1)),
    "--cpu-offload-gb": FlagSpec("GiB of weights kept in CPU memory per GPU", _number(0, 4096)),
    "--quantization": FlagSpec("weight quantization method", _word),
    "--tokenizer-mode": FlagSpec("tokenizer mode", _word),
    "--revision": FlagSpec("model revision on the hub", _word),
    "--tokenizer-revision": FlagSpec("tokenizer revision on the hub", _word),
    "--load-format": FlagSpec("weight file format", _word),
    "--disable-sliding-window": FlagSpec("disable sliding-window attention"),
    "--disable-cascade-attn": FlagSpec("disable cascade attention"),
    "--max-logprobs": FlagSpec("most log-probabilities a request may ask for", _integer(0, 100)),
    "--generation-config": FlagSpec("where default sampling settings come from", _choice("auto", "vllm")),
    "--override-generation-config": FlagSpec("default sampling settings (JSON object)", _json_object),
    "--enable-auto-tool-choice": FlagSpec("let the model choose tools"),
    "--tool-call-parser": FlagSpec("tool call parser", _word),
    "--async-scheduling": FlagSpec("overlap scheduling with execution"),
    "--stream-interval": FlagSpec("tokens per streamed chunk", _integer(1, 1000)),
    "--long-prefill-token-threshold": FlagSpec("prompt length counted as long", _integer(0, 10_485_760)),
    "--optimization-level": FlagSpec("compile optimisation level", _integer(0, 3)),
    "--enable-expert-parallel": FlagSpec("expert parallelism for MoE models"),
    "--data-parallel-size": FlagSpec("data-parallel replicas", _integer(1, 64)),
    # ray only with PORTAL_ENGINE_RAY_ADDRESS naming a private address (see ray_address_problem).
    "--distributed-executor-backend": FlagSpec("multi-GPU executor", _executor_backend),
    "--disable-custom-all-reduce": FlagSpec("use NCCL all-reduce only"),
    "--num-gpu-blocks-override": FlagSpec("fixed number of KV cache blocks", _integer(1, 10_000_000)),
    "--hf-overrides": FlagSpec("model config overrides (JSON object)", _json_object),
    "--limit-mm-per-prompt": FlagSpec("multimodal items per prompt (JSON object)", _json_object),
    "--language-model-only": FlagSpec("load only the text part of a multimodal model"),
    "--max-num-queued-reqs": FlagSpec("most queued requests", _integer(1, 1_000_000)),
}

# Flags refused with a reason, because they would undo what the portal guarantees.
UNSAFE_FLAGS: dict[str, str] = {
    "--host": "the engine listens on a private Unix socket; only the portal talks to it",
    "--port": "the engine listens on a private Unix socket; only the portal talks to it",
    "--uds": "the supervisor chooses the engine's private Unix socket",
    "--api-key": "the supervisor gives each launch a fresh key",
    "--allowed-origins": "browsers never talk to the engine directly",
    "--allowed-methods": "browsers never talk to the engine directly",
    "--allowed-headers": "browsers never talk to the engine directly",
    "--allow-credentials": "browsers never talk to the engine directly",
    "--root-path": "the portal routes requests itself",
    "--ssl-keyfile": "the engine is on a private socket; TLS belongs on the reverse proxy",
    "--ssl-certfile": "the engine is on a private socket; TLS belongs on the reverse proxy",
    "--ssl-ca-certs": "the engine is on a private socket; TLS belongs on the reverse proxy",
    "--middleware": "it imports arbitrary code into the engine",
    "--trust-remote-code": "it runs code shipped with the model",
    "--worker-cls": "it imports arbitrary code into the engine",
    "--worker-extension-cls": "it imports arbitrary code into the engine",
    "--scheduler-cls": "it imports arbitrary code into the engine",
    "--logits-processors": "it imports arbitrary code into the engine",
    "--tool-parser-plugin": "it imports arbitrary code into the engine",
    "--reasoning-parser-plugin": "it imports arbitrary code into the engine",
    "--chat-template": "it reads an arbitrary file; the model's own template is used",
    "--download-dir": "it writes to an arbitrary directory",
    "--enable-log-requests": "it would write prompts (personal data) to the engine log",
    "--enable-log-outputs": "it would write answers (personal data) to the engine log",
    "--disable-log-stats": "the portal's metrics and charts need the engine's statistics",
    "--headless": "the portal needs the engine's HTTP server",
    "--api-server-count": "the supervisor runs exactly one API server per engine",
}

# Flags that have their own field in the engine config.
FIELD_FLAGS: dict[str, str] = {
    "--model": "model",
    "--served-model-name": "served model name",
    "--dtype": "dtype",
    "--max-model-len": "max model length",
    "--gpu-memory-utilization": "GPU memory utilization",
    "--tensor-parallel-size": "tensor parallel size",
    "-tp": "tensor parallel size",
    "--pipeline-parallel-size": "pipeline parallel size",
    "-pp": "pipeline parallel size",
    "--max-num-seqs": "max sequences",
    "--enable-chunked-prefill": "chunked prefill",
    "--no-enable-chunked-prefill": "chunked prefill",
    "--enable-prefix-caching": "prefix caching",
    "--no-enable-prefix-caching": "prefix caching",
    "--kv-cache-dtype": "KV cache dtype",
    "--reasoning-parser": "reasoning parser",
    "--scheduling-policy": "scheduling policy",
}


def parse_extra_flags(text: str) -> list[tuple[str, str | None]]:
    """Parse and check the extra flags; return (flag, value) pairs in order.

    Raises ``ValidationError`` listing every refused flag and bad value.
    """
    try:
        tokens = shlex.split(text, comments=True)
    except ValueError as exc:
        raise ValidationError(f"The flags cannot be read: {exc}.") from None
    errors: list[str] = []
    flags: list[tuple[str, str | None]] = []
    seen: set[str] = set()
    index = 0
    while index < len(tokens):
        token = tokens[index]
        index += 1
        flag, has_inline, inline = token.partition("=")
        if not flag.startswith("-"):
            errors.append(f"{token!r} is not a flag (flags start with --).")
            continue
        refusal = _refusal(flag)
        if refusal:
            errors.append(refusal)
            if has_inline == "" and index < len(tokens) and not tokens[index].startswith("-"):
                index += 1  # skip the refused flag's value too, so it is not reported again
            continue
        spec = ALLOWED_FLAGS[flag]
        if flag in seen:
            errors.append(f"{flag} is given twice.")
        seen.add(flag)
        if not spec.takes_value:
            if has_inline:
                errors.append(f"{flag} takes no value.")
            flags.append((flag, None))
            continue
        if has_inline:
            value = inline
        elif index < len(tokens) and not tokens[index].startswith("--"):
            value = tokens[index]
            index += 1
        else:
            errors.append(f"{flag} needs a value ({spec.help}).")
            continue
        problem = spec.check(value) if spec.check else None
        if problem:
            errors.append(f"{flag} {value!r}: {problem}.")
            continue
        flags.append((flag, value))
    if errors:
        raise ValidationError(errors)
    return flags


def _refusal(flag: str) -> str | None:
    if flag in UNSAFE_FLAGS:
        return f"{flag} is not allowed: {UNSAFE_FLAGS[flag]}."
    if flag in FIELD_FLAGS:
        return f"{flag} has its own field: set the {FIELD_FLAGS[flag]} field instead."
    if flag not in ALLOWED_FLAGS:
        return f"{flag} is not on the allow-list of engine flags (see docs/engine.md)."
    return None


def validate_extra_flags(text: str) -> None:
    """Field validator of ``EngineConfig.extra_flags``: raise ``ValidationError`` for any refused flag."""
    parse_extra_flags(text or "")
