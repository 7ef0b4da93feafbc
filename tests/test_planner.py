"""The memory planner's figures for gpt-oss-20b (24, 48, 80 GB GPUs) and the demo model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inference.planner import (
    GIB,
    Capacity,
    ModelShape,
    PlanError,
    PlanSettings,
    kv_layer_token_bytes,
    load_shape,
    plan,
    sequence_kv_bytes,
    weight_bytes,
)

GPT_OSS = Path(__file__).resolve().parent.parent / "inference" / "model_configs" / "openai--gpt-oss-20b.json"
# SmolLM2-135M-Instruct's config.json as the demo preparation writes it (the fields that matter).
SMOLLM2 = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "head_dim": 64,
    "vocab_size": 49152,
    "max_position_embeddings": 8192,
    "tie_word_embeddings": True,
    "dtype": "bfloat16",
}


@pytest.fixture
def gpt_oss() -> ModelShape:
    return ModelShape.from_config(json.loads(GPT_OSS.read_text()))


@pytest.fixture
def smollm2() -> ModelShape:
    return ModelShape.from_config(SMOLLM2)


def test_gpt_oss_20b_has_21_billion_parameters_and_12_8_gib_of_mxfp4_weights(gpt_oss):
    assert sum(gpt_oss.parameters().values()) == pytest.approx(20.9e9, rel=0.01)
    assert gpt_oss.quantization == "mxfp4"
    # The published checkpoint is about 13.8 GB: bf16 attention and embeddings, 4.25-bit experts.
    assert weight_bytes(gpt_oss, PlanSettings()) / GIB == pytest.approx(12.8, abs=0.1)


def test_gpt_oss_20b_kv_cache_counts_only_full_attention_layers_beyond_the_window(gpt_oss):
    assert gpt_oss.sliding_layers == 12
    assert gpt_oss.sliding_window == 128
    assert kv_layer_token_bytes(gpt_oss, PlanSettings()) == 2 * 8 * 64 * 2
    per_token_full = 12 * 2048
    assert sequence_kv_bytes(gpt_oss, PlanSettings(), 131072) == per_token_full * 131072 + 12 * 2048 * 128
    assert sequence_kv_bytes(gpt_oss, PlanSettings(kv_cache_dtype="fp8"), 1000) * 2 == sequence_kv_bytes(
        gpt_oss, PlanSettings(), 1000
    )


@pytest.mark.parametrize(
    ("gigabytes", "kv_gib", "full_context_sequences", "all_256_up_to"),
    [(24, 7.3, 2, 1117), (48, 28.9, 9, 4803), (80, 57.7, 19, 9718)],
)
def test_gpt_oss_20b_fits_a_24_48_and_80_gb_gpu(gpt_oss, gigabytes, kv_gib, full_context_sequences, all_256_up_to):
    result = plan(gpt_oss, PlanSettings(device="cuda", max_num_seqs=256), Capacity(gpu_bytes=[gigabytes * GIB]))
    assert result.fits is True
    assert result.max_model_len == 131072
    assert result.kv_budget_bytes is not None
    assert result.kv_budget_bytes / GIB == pytest.approx(kv_gib, abs=0.05)
    assert result.concurrency_at_max_len == full_context_sequences
    assert result.max_len_at_max_num_seqs == all_256_up_to
    assert f"{full_context_sequences} x 131072 tokens at once" in result.summary
    assert any("sequences fit at once" in tip for tip in result.advice)


def test_gpt_oss_20b_full_context_does_not_fit_16_gb_and_the_planner_says_how_long_fits(gpt_oss):
    result = plan(gpt_oss, PlanSettings(device="cuda", max_num_seqs=16), Capacity(gpu_bytes=[16 * GIB]))
    assert result.fits is False
    assert "cannot hold one sequence of 131072 tokens" in result.problems[0]
    assert result.advice[0] == "Lower max model length to at most 4101."
    assert any("fp8" in tip for tip in result.advice)
    shorter = plan(
        gpt_oss, PlanSettings(device="cuda", max_model_len=4096, max_num_seqs=16), Capacity(gpu_bytes=[16 * GIB])
    )
    assert shorter.fits is True


def test_gpt_oss_20b_weights_do_not_fit_a_12_gb_gpu_and_tensor_parallel_helps(gpt_oss):
    alone = plan(gpt_oss, PlanSettings(device="cuda"), Capacity(gpu_bytes=[12 * GIB]))
    assert alone.fits is False
    assert "weights need 12.8 GiB per GPU" in alone.problems[0]
    two = plan(gpt_oss, PlanSettings(device="cuda"), Capacity(gpu_bytes=[12 * GIB, 12 * GIB]))
    assert two.fits is False
    assert two.advice[0] == "Raise tensor parallel size to 2."
    split = plan(gpt_oss, PlanSettings(device="cuda", tensor_parallel_size=2), Capacity(gpu_bytes=[12 * GIB] * 2))
    assert split.fits is True


def test_asking_for_more_gpus_than_the_host_has_is_refused(gpt_oss):
    result = plan(gpt_oss, PlanSettings(device="cuda", tensor_parallel_size=4), Capacity(gpu_bytes=[80 * GIB]))
    assert result.fits is False
    assert result.advice == ["Lower tensor parallel size to at most 1."]


def test_without_a_known_gpu_the_plan_says_unknown_not_no(gpt_oss):
    result = plan(gpt_oss, PlanSettings(device="cuda"), None)
    assert result.fits is None
    assert result.kv_budget_bytes is None


def test_the_demo_model_on_one_gib_of_cpu_kv_cache(smollm2):
    assert sum(smollm2.parameters().values()) == pytest.approx(134.5e6, rel=0.01)
    settings = PlanSettings(device="cpu", cpu_kv_cache_gib=1, max_model_len=2048, max_num_seqs=8)
    result = plan(smollm2, settings, Capacity(ram_bytes=24 * GIB))
    assert result.fits is True
    assert result.weights_bytes / GIB == pytest.approx(0.25, abs=0.01)
    # vLLM itself reported "CPU KV cache size: 46,592 tokens" for this model and 1 GiB.
    assert result.kv_bytes_per_token == 23040
    assert result.kv_tokens == pytest.approx(46592, rel=0.01)
    assert result.concurrency_at_max_len == 22


def test_the_demo_model_refuses_more_context_than_its_positions(smollm2):
    result = plan(smollm2, PlanSettings(device="cpu", max_model_len=100000), Capacity(ram_bytes=24 * GIB))
    assert result.fits is False
    assert result.advice == ["Lower max model length to at most 8192."]


def test_a_cpu_kv_cache_larger_than_the_ram_is_refused(smollm2):
    result = plan(smollm2, PlanSettings(device="cpu", cpu_kv_cache_gib=64), Capacity(ram_bytes=24 * GIB))
    assert result.fits is False
    assert "exceed the host's 24.0 GiB of RAM" in result.problems[0]
    assert result.advice == ["Lower CPU KV cache GiB to at most 21."]


def test_the_shipped_gpt_oss_config_is_found_by_hub_id():
    assert load_shape("openai/gpt-oss-20b").layers == 24
    with pytest.raises(PlanError):
        load_shape("acme/unknown-model")


def test_a_parallel_size_of_zero_is_planned_as_one_gpu_instead_of_failing():
    shape = ModelShape.from_config(SMOLLM2)
    zero = plan(shape, PlanSettings(tensor_parallel_size=0, pipeline_parallel_size=0), Capacity(gpu_bytes=[24 * GIB]))
    one = plan(shape, PlanSettings(), Capacity(gpu_bytes=[24 * GIB]))
    assert zero == one
