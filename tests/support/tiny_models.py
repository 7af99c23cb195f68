"""Tiny random-init causal LMs of real architectures, saved as safetensors with a tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

VOCAB = 512

# hidden sizes are multiples of 16 so every N:M group used in tests divides the width.
CONFIGS: dict[str, tuple[str, dict]] = {
    "llama": ("LlamaConfig", dict(num_attention_heads=4, num_key_value_heads=2)),
    # four layers: enough for a per-layer sparsity profile (OWL) to differ between layers
    "llama4": (
        "LlamaConfig",
        dict(num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=4),
    ),
    # the input embedding is the output head (save_pretrained writes it once)
    "llama_tied": (
        "LlamaConfig",
        dict(num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True),
    ),
    # an MLP 48 wide: N:M with M = 32 does not divide down_proj's inputs (the width check)
    "llama_mlp48": (
        "LlamaConfig",
        dict(num_attention_heads=4, num_key_value_heads=2, intermediate_size=48),
    ),
    # a 12.6 MB checkpoint (a wide vocabulary): several 5 MiB parts of a multipart upload
    "llama_wide_vocab": (
        "LlamaConfig",
        dict(num_attention_heads=4, num_key_value_heads=2, vocab_size=24576),
    ),
    "mistral": ("MistralConfig", dict(num_attention_heads=4, num_key_value_heads=2)),
    "qwen2": ("Qwen2Config", dict(num_attention_heads=4, num_key_value_heads=2)),
    "gemma": ("GemmaConfig", dict(num_attention_heads=4, num_key_value_heads=1, head_dim=16)),
    "gemma2": ("Gemma2Config", dict(num_attention_heads=4, num_key_value_heads=2, head_dim=16)),
    "phi3": ("Phi3Config", dict(num_attention_heads=4, num_key_value_heads=4)),
    "gpt2": ("GPT2Config", dict(n_embd=64, n_layer=2, n_head=4, n_positions=256)),
    "gpt_neox": ("GPTNeoXConfig", dict(num_attention_heads=4)),
    "opt": ("OPTConfig", dict(num_attention_heads=4, ffn_dim=128, word_embed_proj_dim=64)),
}
COMMON = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    max_position_embeddings=256,
    tie_word_embeddings=False,
)


def make_tiny_model(arch: str, out: Path, seed: int = 0, max_shard_size: str | None = None) -> Path:
    """Create and save a random-init model of `arch` plus a byte-level tokenizer in `out`
    (in shards of at most `max_shard_size`, e.g. "100KB", with an index, when given)."""
    import torch
    import transformers

    cls_name, extra = CONFIGS[arch]
    cfg_cls = getattr(transformers, cls_name)
    kwargs = dict(COMMON)
    if arch == "gpt2":
        kwargs = {"vocab_size": VOCAB, "tie_word_embeddings": False}
    kwargs.update(extra)
    kwargs.update(bos_token_id=1, eos_token_id=2, pad_token_id=3)
    config = cfg_cls(**kwargs)
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config)
    model.eval()
    out = Path(out)
    shards = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(out, safe_serialization=True, **shards)
    save_tokenizer(out)
    return out


def save_tokenizer(out: Path) -> None:
    """A word-level-ish byte tokenizer over VOCAB ids, fast-tokenizer format."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {f"<{i}>": i for i in range(4)}
    for b in range(256):
        vocab[chr(b) if chr(b).isprintable() and chr(b) != " " else f"<0x{b:02X}>"] = 4 + b
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<0>"))
    tok.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<0>", bos_token="<1>", eos_token="<2>", pad_token="<3>"
    )
    fast.save_pretrained(out)
    (Path(out) / "tiny_model.json").write_text(json.dumps({"vocab": VOCAB}))
