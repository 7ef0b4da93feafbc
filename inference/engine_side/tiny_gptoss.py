"""Write a tiny gpt-oss checkpoint that always answers with one fixed, valid Harmony sequence.

Run with the engine's Python: ``.venv-engine/bin/python tiny_gptoss.py OUT_DIR``. Offline and
deterministic: every weight is set by hand (no random initialisation survives), and the
vocabulary comes from the ``openai_harmony`` package installed with vLLM.

The model is gpt-oss's architecture (``GptOssConfig``: attention sinks, sliding and full
attention, a mixture of experts, YaRN rope) at a toy size, so vLLM serves it through the same
code path as gpt-oss-20b: the Harmony prompt, ``--reasoning-parser openai_gptoss``,
``reasoning_effort`` and the streamed ``reasoning`` field. Whatever it is asked, it writes
(one line, broken here)::

    <|channel|>analysis<|message|>The user says hi<|end|>
    <|start|>assistant<|channel|>final<|message|>Hello! I am a tiny model.<|return|>

How the weights do that (everything else is zero):

- The embedding puts each token of that answer on its own hidden dimension (other tokens on
  none).
- ``lm_head`` is a successor table: the row of token b reads the dimension of token a when b
  follows a in the answer ("assistant" is followed by ``<|channel|>``, "The" by " user"...).
- What follows ``<|channel|>`` and ``<|message|>`` depends on where the answer is. Two heads
  of layer 0 (a sliding window of 12 tokens) raise a flag when "analysis" or "final" was
  written in the window: they ask only at those two tokens (elsewhere the attention sink takes
  their attention), their key is the token's
  "analysis" or "final" dimension, placed on the lowest rope frequencies so the rotation is
  negligible, and the value copies that dimension into a flag dimension of the residual.
  ``<|channel|>`` then leads to "analysis" without a flag and "final" with the analysis
  flag; ``<|message|>`` to "The" with the analysis flag and "Hello" with the final one.

The logit margins are large (over 50) so that the answer holds when sampled at any
temperature the portal allows, not only greedily.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

ANSWER = (
    "<|channel|>analysis<|message|>The user says hi<|end|>"
    "<|start|>assistant<|channel|>final<|message|>Hello! I am a tiny model.<|return|>"
)
HIDDEN = 64
HEAD_DIM = 64
HEADS = 4
VOCAB = 201088  # o200k's 199,998 tokens + Harmony's special tokens, as gpt-oss has it
O200K_TOKENS = 199998
O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
# Residual dimensions of the two flags (the answer's tokens use 0..19).
FLAG_ANALYSIS, FLAG_FINAL = 40, 41
# Key dimensions with the lowest rope frequencies (rotate_half pairs i with i + 32).
KEY_ANALYSIS, KEY_FINAL = 31, 30
# One-hot embeddings are 1; RMSNorm over 64 dimensions makes that sqrt(64) = 8.
NORMED = 8.0
SUCCESSOR_GAIN = 12.0
# A flag head asks only at <|channel|> and <|message|>; elsewhere its query is zero and the
# sink takes its attention, so the flags are (almost exactly) zero there.
QUERY = 20.0
SINK = 8.0


def harmony_encoding() -> Any:
    """Return gpt-oss's Harmony encoding (offline with ``oss-harmony``; see the doctor check)."""
    from openai_harmony import HarmonyEncodingName, load_harmony_encoding  # type: ignore[import-not-found]

    return load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)


def special_tokens(encoding: Any) -> dict[str, int]:
    """Return Harmony's special tokens that fit the model's vocabulary, by id."""
    found = {}
    for text in encoding.special_tokens_set:
        ids = encoding.encode(text, allowed_special="all")
        if len(ids) == 1 and O200K_TOKENS <= ids[0] < VOCAB:
            found[text] = ids[0]
    return dict(sorted(found.items(), key=lambda item: item[1]))


def build_tokenizer(encoding: Any, out_dir: Path) -> None:
    """Write tokenizer.json and its config: o200k's ranks read from Harmony, then its specials."""
    from transformers import PreTrainedTokenizerFast  # type: ignore[import-not-found]
    from transformers.convert_slow_tokenizer import TikTokenConverter  # type: ignore[import-not-found]

    ranks = {encoding._inner.decode_bytes([rank]): rank for rank in range(O200K_TOKENS)}
    if len(ranks) != O200K_TOKENS:
        raise SystemExit("the Harmony vocabulary has duplicate tokens; is this o200k?")
    specials = special_tokens(encoding)

    class HarmonyConverter(TikTokenConverter):
        """TikTokenConverter fed with the ranks above instead of a .tiktoken file."""

        @staticmethod
        def load_tiktoken_bpe(tiktoken_url: str) -> dict[bytes, int]:
            return ranks

    converted = HarmonyConverter(vocab_file="harmony:o200k", pattern=O200K_PATTERN).converted()
    from tokenizers import AddedToken  # type: ignore[import-not-found]

    # Added in id order, so each gets the id Harmony gives it (199998, 199999, ...).
    converted.add_special_tokens([AddedToken(text, special=True, normalized=False) for text in specials])
    for text, wanted in specials.items():
        if converted.token_to_id(text) != wanted:
            raise SystemExit(f"{text} got id {converted.token_to_id(text)}, Harmony has {wanted}")
    # The roles gpt-oss's own tokenizer gives these special tokens.
    roles = {"bos_token": "<|startoftext|>", "eos_token": "<|return|>", "pad_token": "<|endoftext|>"}
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=converted, model_max_length=131072, **roles)
    tokenizer.save_pretrained(out_dir)


def answer_ids(encoding: Any) -> list[int]:
    """Return the fixed answer's token ids; the distinct ones each get a hidden dimension."""
    ids: list[int] = encoding.encode(ANSWER, allowed_special="all")
    return ids


def build_weights(encoding: Any) -> dict[str, Any]:
    """Return the state dict that makes the model write :data:`ANSWER` (see the module doc)."""
    import torch  # type: ignore[import-not-found]

    ids = answer_ids(encoding)
    order = list(dict.fromkeys(ids))
    dim = {token: index for index, token in enumerate(order)}
    if len(order) >= FLAG_ANALYSIS:
        raise SystemExit("the answer has too many distinct tokens for the hidden size")
    token = {name: encoding.encode(name, allowed_special="all")[0] for name in ("analysis", "final")}
    channel, message = (encoding.encode(name, allowed_special="all")[0] for name in ("<|channel|>", "<|message|>"))
    hello, the = ids[ids.index(token["final"]) + 2], ids[ids.index(token["analysis"]) + 2]

    def zeros(*shape: int) -> Any:
        return torch.zeros(*shape, dtype=torch.float32)

    embed = zeros(VOCAB, HIDDEN)
    for tok, index in dim.items():
        embed[tok, index] = 1.0
    head = zeros(VOCAB, HIDDEN)
    gain = SUCCESSOR_GAIN
    for before, after in itertools.pairwise(ids):
        if before not in (channel, message):
            head[after, dim[before]] = gain
    # The prompt ends in "<|start|>assistant"; "assistant" is followed by <|channel|> anyway.
    head[token["analysis"], dim[channel]] = gain
    head[token["analysis"], FLAG_ANALYSIS] = -2 * gain
    # "final" needs the analysis flag and is held down at <|message|> (which also sees the flag).
    head[token["final"], FLAG_ANALYSIS] = gain
    head[token["final"], dim[message]] = -2 * gain
    head[the, dim[message]] = gain
    head[the, FLAG_FINAL] = -3 * gain
    head[hello, FLAG_FINAL] = 2 * gain

    weights: dict[str, Any] = {"model.embed_tokens.weight": embed, "lm_head.weight": head}
    weights["model.norm.weight"] = torch.ones(HIDDEN)
    for layer in range(2):
        prefix = f"model.layers.{layer}."
        weights[prefix + "input_layernorm.weight"] = torch.ones(HIDDEN)
        weights[prefix + "post_attention_layernorm.weight"] = torch.ones(HIDDEN)
        attention = {
            "sinks": zeros(HEADS),
            "q_proj.weight": zeros(HEADS * HEAD_DIM, HIDDEN),
            "q_proj.bias": zeros(HEADS * HEAD_DIM),
            "k_proj.weight": zeros(HEAD_DIM, HIDDEN),
            "k_proj.bias": zeros(HEAD_DIM),
            "v_proj.weight": zeros(HEAD_DIM, HIDDEN),
            "v_proj.bias": zeros(HEAD_DIM),
            "o_proj.weight": zeros(HIDDEN, HEADS * HEAD_DIM),
            "o_proj.bias": zeros(HIDDEN),
        }
        if layer == 0:
            # Head 0 looks for "analysis", head 1 for "final" (one key/value head shared by all).
            for asking in (channel, message):
                attention["q_proj.weight"][KEY_ANALYSIS, dim[asking]] = QUERY / NORMED
                attention["q_proj.weight"][HEAD_DIM + KEY_FINAL, dim[asking]] = QUERY / NORMED
            attention["sinks"][:2] = SINK
            attention["k_proj.weight"][KEY_ANALYSIS, dim[token["analysis"]]] = 1.0
            attention["k_proj.weight"][KEY_FINAL, dim[token["final"]]] = 1.0
            attention["v_proj.weight"][0, dim[token["analysis"]]] = 1.0 / NORMED
            attention["v_proj.weight"][1, dim[token["final"]]] = 1.0 / NORMED
            attention["o_proj.weight"][FLAG_ANALYSIS, 0] = 1.0
            attention["o_proj.weight"][FLAG_FINAL, HEAD_DIM + 1] = 1.0
        for name, value in attention.items():
            weights[prefix + "self_attn." + name] = value
        experts, intermediate = 4, 64
        weights[prefix + "mlp.router.weight"] = zeros(experts, HIDDEN)
        weights[prefix + "mlp.router.bias"] = zeros(experts)
        weights[prefix + "mlp.experts.gate_up_proj"] = zeros(experts, HIDDEN, 2 * intermediate)
        weights[prefix + "mlp.experts.gate_up_proj_bias"] = zeros(experts, 2 * intermediate)
        weights[prefix + "mlp.experts.down_proj"] = zeros(experts, intermediate, HIDDEN)
        weights[prefix + "mlp.experts.down_proj_bias"] = zeros(experts, HIDDEN)
    return weights


def build_config(encoding: Any) -> Any:
    """Return gpt-oss's config at a toy size (attention sinks, sliding + full, MoE, YaRN)."""
    from transformers import GptOssConfig

    specials = special_tokens(encoding)
    return GptOssConfig(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        head_dim=HEAD_DIM,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=HEADS,
        num_key_value_heads=1,
        num_local_experts=4,
        num_experts_per_tok=2,
        # vLLM's CPU attention needs a head size of 64; a window of 12 covers one answer part.
        sliding_window=12,
        layer_types=["sliding_attention", "full_attention"],
        max_position_embeddings=131072,
        tie_word_embeddings=False,
        bos_token_id=specials["<|startoftext|>"],
        eos_token_id=specials["<|return|>"],
        pad_token_id=specials["<|endoftext|>"],
        dtype="bfloat16",
    )


def build(out_dir: Path) -> float:
    """Write the checkpoint to ``out_dir`` (replaced whole, never half-written); return seconds taken."""
    import torch
    from transformers import GenerationConfig, GptOssForCausalLM

    started = time.monotonic()
    encoding = harmony_encoding()
    partial = out_dir.with_name(out_dir.name + f".partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    config = build_config(encoding)
    model = GptOssForCausalLM(config).to(torch.bfloat16)
    missing, unexpected = model.load_state_dict(build_weights(encoding), strict=True)
    if missing or unexpected:
        raise SystemExit(f"weights do not match the model: missing {missing}, unexpected {unexpected}")
    model.save_pretrained(partial, safe_serialization=True)
    specials = special_tokens(encoding)
    GenerationConfig(
        bos_token_id=specials["<|startoftext|>"],
        eos_token_id=[specials["<|return|>"], specials["<|endoftext|>"], specials["<|call|>"]],
        pad_token_id=specials["<|endoftext|>"],
    ).save_pretrained(partial)
    build_tokenizer(encoding, partial)
    (partial / "portal-answer.json").write_text(json.dumps({"answer": ANSWER}), encoding="utf-8")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    partial.rename(out_dir)
    return time.monotonic() - started


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.stderr.write("usage: tiny_gptoss.py OUT_DIR\n")
        sys.exit(2)
    seconds = build(Path(sys.argv[1]).resolve())
    sys.stdout.write(f"built {sys.argv[1]} in {seconds:.1f}s\n")
