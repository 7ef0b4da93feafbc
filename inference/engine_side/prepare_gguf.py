"""Turn a GGUF file into a safetensors model folder that vLLM's CPU build can serve.

Run with the engine's Python: ``.venv-engine/bin/python prepare_gguf.py GGUF_FILE OUT_DIR``.
transformers loads the GGUF dequantized but marks the model "quantized", which refuses
``save_pretrained``; a fresh model built from the same config (without
``quantization_config``) takes the dequantized weights and saves normally.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path


def prepare(gguf_file: Path, out_dir: Path) -> None:
    """Write ``out_dir`` (bf16 safetensors, tokenizer, chat template) from ``gguf_file``."""
    import torch  # type: ignore[import-not-found]
    from transformers import AutoModelForCausalLM, AutoTokenizer  # type: ignore[import-not-found]

    started = time.monotonic()
    folder, name = str(gguf_file.parent), gguf_file.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.bfloat16)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    fresh.load_state_dict(loaded.state_dict())
    # Write next to the target and rename, so a half-written folder is never mistaken for a model.
    partial = out_dir.with_name(out_dir.name + f".partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    fresh.save_pretrained(partial, safe_serialization=True)
    tokenizer.save_pretrained(partial)
    stat = gguf_file.stat()
    marker = {"source": str(gguf_file), "size": stat.st_size, "mtime": int(stat.st_mtime)}
    (partial / "portal-source.json").write_text(json.dumps(marker), encoding="utf-8")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    partial.rename(out_dir)
    sys.stdout.write(f"prepared {out_dir} in {time.monotonic() - started:.1f}s\n")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.stderr.write("usage: prepare_gguf.py GGUF_FILE OUT_DIR\n")
        sys.exit(2)
    prepare(Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve())
