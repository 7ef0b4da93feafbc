"""Memory planner: will an engine config fit, how much context x concurrency, what to change.

Method (docs/engine.md has the worked example for gpt-oss-20b):

- Weights: parameters counted from the model's ``config.json`` (embeddings, attention,
  dense MLP, MoE experts), times the bytes per parameter of the dtype or quantization
  (MXFP4 experts take 4.25 bits: 4-bit values plus one 8-bit scale per 32).
- KV cache per token: 2 (K and V) x layers x KV heads x head dim x KV dtype bytes. Layers
  with sliding-window attention keep at most ``sliding_window`` tokens per sequence.
- GPU budget per GPU: memory x ``gpu_memory_utilization`` - the GPU's share of the
  weights - a fixed overhead (CUDA context, activations, CUDA graphs); what is left over all
  GPUs is KV cache. On the CPU the KV cache is exactly ``cpu_kv_cache_gib``.
- It fits when the weights fit and the KV cache holds at least one full-length sequence
  (vLLM refuses to start otherwise).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from inference.models import EngineConfig

GIB = 1024**3
# Per GPU, outside weights and KV cache: CUDA context and activation peak, plus CUDA graphs.
GPU_OVERHEAD_BYTES = 1 * GIB
CUDA_GRAPH_BYTES = GIB // 2
# On the CPU: the Python processes, tokenizer and activations beside weights and KV cache.
CPU_OVERHEAD_BYTES = 2 * GIB
MAX_UTILIZATION = 0.95
KNOWN_CONFIGS = Path(__file__).resolve().parent / "model_configs"

_DTYPE_BYTES = {"float32": 4, "float": 4, "bfloat16": 2, "float16": 2, "half": 2}


class PlanError(Exception):
    """The model's config.json cannot be found or read; no estimate is possible."""


@dataclass(frozen=True)
class ModelShape:
    """The figures of a model's config.json the planner needs."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    intermediate: int
    experts: int
    experts_per_token: int
    expert_intermediate: int
    shared_experts: int
    tied_embeddings: bool
    sliding_window: int | None
    sliding_layers: int
    max_position: int
    dtype_bytes: int
    quantization: str
    quant_bits: float | None

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ModelShape:
        """Read a Hugging Face config.json (nested ``text_config`` for multimodal models)."""
        if "text_config" in config and "num_hidden_layers" not in config:
            config = {**config["text_config"], "quantization_config": config.get("quantization_config")}
        try:
            layers = int(config["num_hidden_layers"])
            hidden = int(config["hidden_size"])
            heads = int(config["num_attention_heads"])
            vocab = int(config["vocab_size"])
        except (KeyError, TypeError, ValueError) as exc:
            raise PlanError(f"config.json lacks {exc}; cannot estimate memory.") from None
        kv_heads = int(config.get("num_key_value_heads") or heads)
        head_dim = int(config.get("head_dim") or hidden // heads)
        experts = int(
            config.get("num_local_experts") or config.get("num_experts") or config.get("n_routed_experts") or 0
        )
        per_token = int(config.get("num_experts_per_tok") or config.get("experts_per_token") or 0)
        intermediate = int(config.get("intermediate_size") or 4 * hidden)
        expert_intermediate = int(config.get("moe_intermediate_size") or intermediate)
        window = config.get("sliding_window")
        layer_types = config.get("layer_types") or []
        if window and layer_types:
            sliding = sum(1 for kind in layer_types if kind == "sliding_attention")
        elif window and config.get("use_sliding_window", True) and config.get("model_type") not in ("qwen2", "qwen3"):
            sliding = layers
        else:
            sliding = 0
        dtype = str(config.get("torch_dtype") or config.get("dtype") or "bfloat16")
        quant = config.get("quantization_config") or {}
        method = str(quant.get("quant_method") or "") if isinstance(quant, dict) else ""
        bits = quant.get("bits") if isinstance(quant, dict) else None
        if isinstance(quant, dict) and quant.get("load_in_4bit"):
            bits = 4
        return cls(
            layers=layers,
            hidden=hidden,
            heads=heads,
            kv_heads=kv_heads,
            head_dim=head_dim,
            vocab=vocab,
            intermediate=intermediate,
            experts=experts,
            experts_per_token=per_token,
            expert_intermediate=expert_intermediate,
            shared_experts=int(config.get("n_shared_experts") or 0),
            tied_embeddings=bool(config.get("tie_word_embeddings", False)),
            sliding_window=int(window) if sliding and window else None,
            sliding_layers=sliding,
            max_position=int(config.get("max_position_embeddings") or 2048),
            dtype_bytes=_DTYPE_BYTES.get(dtype, 2),
            quantization=method,
            quant_bits=float(bits) if bits else None,
        )

    def parameters(self) -> dict[str, int]:
        """Count parameters by part: embeddings, attention, dense MLP and MoE experts."""
        embeddings = self.vocab * self.hidden * (1 if self.tied_embeddings else 2)
        q_and_o = 2 * self.hidden * self.heads * self.head_dim
        k_and_v = 2 * self.hidden * self.kv_heads * self.head_dim
        attention = self.layers * (q_and_o + k_and_v)
        if self.experts:
            per_expert = 3 * self.hidden * self.expert_intermediate
            experts = self.layers * (self.experts + self.shared_experts) * per_expert
            router = self.layers * self.hidden * self.experts
            return {"embeddings": embeddings, "attention": attention + router, "mlp": 0, "experts": experts}
        mlp = self.layers * 3 * self.hidden * self.intermediate
        return {"embeddings": embeddings, "attention": attention, "mlp": mlp, "experts": 0}


@dataclass(frozen=True)
class PlanSettings:
    """The engine settings that decide memory use."""

    device: str = "cuda"
    dtype: str = "auto"
    kv_cache_dtype: str = "auto"
    max_model_len: int | None = None
    max_num_seqs: int = 16
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    cpu_kv_cache_gib: int = 2
    enforce_eager: bool = False

    @classmethod
    def of(cls, config: EngineConfig) -> PlanSettings:
        return cls(
            device=config.device,
            dtype=config.dtype,
            kv_cache_dtype=config.kv_cache_dtype,
            max_model_len=config.max_model_len,
            max_num_seqs=config.max_num_seqs,
            tensor_parallel_size=config.tensor_parallel_size,
            pipeline_parallel_size=config.pipeline_parallel_size,
            gpu_memory_utilization=config.gpu_memory_utilization,
            cpu_kv_cache_gib=config.cpu_kv_cache_gib,
            enforce_eager="--enforce-eager" in config.extra_flags.split(),
        )


@dataclass(frozen=True)
class Capacity:
    """Memory the engine can use: per-GPU totals (bytes), or RAM on a CPU host."""

    gpu_bytes: list[int] = field(default_factory=list)
    ram_bytes: int | None = None
    source: str = ""


@dataclass(frozen=True)
class Plan:
    """The planner's answer. ``fits`` is None when the capacity is unknown."""

    fits: bool | None
    weights_bytes: int
    kv_bytes_per_token: int
    kv_budget_bytes: int | None
    kv_tokens: int | None
    max_model_len: int
    concurrency_at_max_len: int | None
    max_len_at_max_num_seqs: int | None
    summary: str
    problems: list[str] = field(default_factory=list)
    advice: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "fits": self.fits,
            "weights_gib": round(self.weights_bytes / GIB, 2),
            "kv_bytes_per_token": self.kv_bytes_per_token,
            "kv_budget_gib": None if self.kv_budget_bytes is None else round(self.kv_budget_bytes / GIB, 2),
            "kv_tokens": self.kv_tokens,
            "max_model_len": self.max_model_len,
            "concurrency_at_max_len": self.concurrency_at_max_len,
            "max_len_at_max_num_seqs": self.max_len_at_max_num_seqs,
            "summary": self.summary,
            "problems": self.problems,
            "advice": self.advice,
        }


def weight_bytes(shape: ModelShape, settings: PlanSettings) -> int:
    """Estimate the bytes of the model's weights as vLLM loads them."""
    params = shape.parameters()
    if settings.dtype == "float32":
        base = 4.0
    elif settings.dtype in ("bfloat16", "float16"):
        base = 2.0
    else:
        # vLLM's "auto" keeps 16-bit weights and casts float32 checkpoints down to 16 bits.
        base = 2.0
    method = shape.quantization
    linear = params["attention"] + params["mlp"] + params["experts"]
    if method == "mxfp4":
        # gpt-oss: only the MoE experts are MXFP4; attention, router, embeddings stay 16-bit.
        return int((params["embeddings"] + params["attention"] + params["mlp"]) * base + params["experts"] * 4.25 / 8)
    if method in ("fp8", "fbgemm_fp8", "modelopt"):
        return int(params["embeddings"] * base + linear * 1.0)
    if shape.quant_bits:
        # GPTQ/AWQ-style: packed values plus a 16-bit scale and zero per group of 128.
        per_param = shape.quant_bits / 8 + 4 / 128
        return int(params["embeddings"] * base + linear * per_param)
    return int(sum(params.values()) * base)


def _kv_dtype_bytes(shape: ModelShape, settings: PlanSettings) -> int:
    if settings.kv_cache_dtype.startswith("fp8"):
        return 1
    if settings.kv_cache_dtype in ("bfloat16", "float16"):
        return 2
    return 4 if settings.dtype == "float32" else 2


def kv_layer_token_bytes(shape: ModelShape, settings: PlanSettings) -> int:
    """Bytes one token takes in the KV cache of one layer (K and V)."""
    return 2 * shape.kv_heads * shape.head_dim * _kv_dtype_bytes(shape, settings)


def sequence_kv_bytes(shape: ModelShape, settings: PlanSettings, length: int) -> int:
    """Bytes of KV cache one sequence of ``length`` tokens needs."""
    per_layer = kv_layer_token_bytes(shape, settings)
    full_layers = shape.layers - shape.sliding_layers
    window = min(length, shape.sliding_window or length)
    return per_layer * (full_layers * length + shape.sliding_layers * window)


def _longest(shape: ModelShape, settings: PlanSettings, budget: int, sequences: int) -> int:
    """Longest length at which ``sequences`` sequences fit into ``budget`` bytes."""
    per_layer = kv_layer_token_bytes(shape, settings)
    full_layers = shape.layers - shape.sliding_layers
    share = budget // max(1, sequences)
    if full_layers == 0:
        return shape.max_position if share >= sequence_kv_bytes(shape, settings, shape.max_position) else 0
    window = shape.sliding_window or 0
    # Beyond the window, each extra token costs only the full-attention layers.
    longest = (share - per_layer * shape.sliding_layers * window) // (per_layer * full_layers)
    if longest < window:
        longest = share // (per_layer * shape.layers)
    return max(0, int(longest))


def plan(shape: ModelShape, settings: PlanSettings, capacity: Capacity | None) -> Plan:
    """Estimate memory for ``shape`` under ``settings`` and say whether it fits ``capacity``."""
    weights = weight_bytes(shape, settings)
    max_len = settings.max_model_len or shape.max_position
    full_layers = shape.layers - shape.sliding_layers
    per_token = kv_layer_token_bytes(shape, settings) * (full_layers or shape.layers)
    need_one = sequence_kv_bytes(shape, settings, max_len)
    problems: list[str] = []
    advice: list[str] = []
    budget = _budget(shape, settings, capacity, weights, problems, advice)
    if budget is None:
        return Plan(
            fits=None if not problems else False,
            weights_bytes=weights,
            kv_bytes_per_token=per_token,
            kv_budget_bytes=None,
            kv_tokens=None,
            max_model_len=max_len,
            concurrency_at_max_len=None,
            max_len_at_max_num_seqs=None,
            summary=problems[0] if problems else f"Weights about {weights / GIB:.1f} GiB; the memory is unknown.",
            problems=problems,
            advice=advice,
        )
    kv_tokens = max(0, budget) // per_token
    concurrency = max(0, budget) // need_one if need_one else 0
    longest_all = min(shape.max_position, _longest(shape, settings, max(0, budget), settings.max_num_seqs))
    if settings.max_model_len and settings.max_model_len > shape.max_position:
        problems.append(
            f"Max model length {settings.max_model_len} exceeds the model's {shape.max_position} positions."
        )
        advice.append(f"Lower max model length to at most {shape.max_position}.")
    if not problems and concurrency < 1:
        longest_one = min(shape.max_position, _longest(shape, settings, max(0, budget), 1))
        problems.append(
            f"The KV cache ({max(0, budget) / GIB:.2f} GiB) cannot hold one sequence of {max_len} tokens "
            f"({need_one / GIB:.2f} GiB)."
        )
        if longest_one >= 16:
            advice.append(f"Lower max model length to at most {longest_one}.")
        advice.extend(_more_room_advice(settings))
    fits = not problems
    if fits and concurrency < settings.max_num_seqs:
        advice.append(
            f"At the full {max_len} tokens only {concurrency} of {settings.max_num_seqs} sequences fit at once "
            f"(the rest wait); all {settings.max_num_seqs} fit up to {longest_all} tokens each."
        )
    if fits:
        summary = (
            f"Fits: weights {weights / GIB:.1f} GiB, KV cache {budget / GIB:.1f} GiB = {kv_tokens:,} tokens; "
            f"{min(concurrency, settings.max_num_seqs)} x {max_len} tokens at once."
        )
    else:
        summary = "Does not fit: " + problems[0]
    return Plan(
        fits=fits,
        weights_bytes=weights,
        kv_bytes_per_token=per_token,
        kv_budget_bytes=budget,
        kv_tokens=kv_tokens,
        max_model_len=max_len,
        concurrency_at_max_len=concurrency,
        max_len_at_max_num_seqs=longest_all,
        summary=summary,
        problems=problems,
        advice=advice,
    )


def _budget(
    shape: ModelShape,
    settings: PlanSettings,
    capacity: Capacity | None,
    weights: int,
    problems: list[str],
    advice: list[str],
) -> int | None:
    """Return the KV cache bytes left after weights and overhead (None when unknown)."""
    if settings.device == "cpu":
        budget = settings.cpu_kv_cache_gib * GIB
        if capacity is not None and capacity.ram_bytes:
            needed = weights + budget + CPU_OVERHEAD_BYTES
            if needed > capacity.ram_bytes:
                problems.append(
                    f"Weights {weights / GIB:.1f} GiB + KV cache {settings.cpu_kv_cache_gib} GiB + about "
                    f"{CPU_OVERHEAD_BYTES // GIB} GiB overhead exceed the host's "
                    f"{capacity.ram_bytes / GIB:.1f} GiB of RAM."
                )
                spare = (capacity.ram_bytes - weights - CPU_OVERHEAD_BYTES) // GIB
                if spare >= 1:
                    advice.append(f"Lower CPU KV cache GiB to at most {spare}.")
                else:
                    advice.append("Use a smaller or quantized model: the weights alone do not fit in RAM.")
                return None
        return budget
    if capacity is None or not capacity.gpu_bytes:
        return None
    # The form never plans a size below 1; a plan from elsewhere must not divide by zero either.
    gpus = max(1, settings.tensor_parallel_size) * max(1, settings.pipeline_parallel_size)
    if gpus > len(capacity.gpu_bytes):
        problems.append(
            f"Tensor x pipeline parallel size {gpus} needs {gpus} GPUs; the host has {len(capacity.gpu_bytes)}."
        )
        advice.append(f"Lower tensor parallel size to at most {len(capacity.gpu_bytes)}.")
        return None
    smallest = min(capacity.gpu_bytes[:gpus])
    overhead = GPU_OVERHEAD_BYTES + (0 if settings.enforce_eager else CUDA_GRAPH_BYTES)
    usable = int(smallest * settings.gpu_memory_utilization) - overhead
    share = math.ceil(weights / gpus)
    if share > usable:
        problems.append(
            f"The weights need {share / GIB:.1f} GiB per GPU, but only {max(0, usable) / GIB:.1f} GiB of each "
            f"{smallest / GIB:.0f} GiB GPU are usable at utilization {settings.gpu_memory_utilization}."
        )
        for tp in (2, 4, 8):
            if tp * settings.pipeline_parallel_size <= len(capacity.gpu_bytes) and math.ceil(weights / tp) < usable:
                advice.append(f"Raise tensor parallel size to {tp}.")
                break
        else:
            advice.append("Use a quantized (smaller) model or a GPU with more memory.")
        if settings.gpu_memory_utilization < MAX_UTILIZATION:
            advice.append(f"Raise GPU memory utilization towards {MAX_UTILIZATION} if the GPU is the engine's alone.")
        return None
    return (usable - share) * gpus


def _more_room_advice(settings: PlanSettings) -> list[str]:
    if settings.device == "cpu":
        return [f"Or raise CPU KV cache GiB (now {settings.cpu_kv_cache_gib})."]
    tips = []
    if settings.gpu_memory_utilization < MAX_UTILIZATION:
        tips.append(
            f"Or raise GPU memory utilization (now {settings.gpu_memory_utilization}, at most {MAX_UTILIZATION})."
        )
    if not settings.kv_cache_dtype.startswith("fp8"):
        tips.append("Or use KV cache dtype fp8 (half the KV memory per token).")
    tips.append(f"Or raise tensor parallel size (now {settings.tensor_parallel_size}) to spread over more GPUs.")
    return tips


def model_config_path(model: str) -> Path | None:
    """Find the config.json of a model folder, the local hub cache, or a shipped known config."""
    if model.startswith("/"):
        path = Path(model) / "config.json"
        return path if path.is_file() else None
    cache = Path.home() / ".cache" / "huggingface" / "hub" / f"models--{model.replace('/', '--')}" / "snapshots"
    if cache.is_dir():
        for snapshot in sorted(cache.iterdir(), reverse=True):
            if (snapshot / "config.json").is_file():
                return snapshot / "config.json"
    known = KNOWN_CONFIGS / f"{model.replace('/', '--')}.json"
    return known if known.is_file() else None


def load_shape(model: str) -> ModelShape:
    """Return the shape of ``model``; raises :class:`PlanError` when its config is unavailable."""
    path = model_config_path(model)
    if path is None:
        raise PlanError(f"No config.json found for {model}; the memory plan is unavailable.")
    try:
        return ModelShape.from_config(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        raise PlanError(f"{path} cannot be read: {exc}") from None


def plan_for(config: EngineConfig, capacity: Capacity | None) -> Plan:
    """Plan ``config`` against ``capacity``; raises :class:`PlanError` without a model config."""
    return plan(load_shape(config.model), PlanSettings.of(config), capacity)
