"""Tiny random-init models of any causal-LM model type transformers knows, shrunk generically
by config attribute names (no per-model code), saved as safetensors with a byte tokenizer.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.tiny_models import VOCAB, save_tokenizer

LAYERS = 2
# attribute name -> tiny value; applied wherever the name occurs, sub-configs included
SIZES: dict[str, object] = {
    **dict.fromkeys(
        [
            "hidden_size",
            "n_embd",
            "d_model",
            "n_embed",
            "dim",
            "model_dim",
            "word_embed_proj_dim",
            "embed_dim",
            "embedding_size",
        ],
        64,
    ),
    **dict.fromkeys(
        [
            "intermediate_size",
            "ffn_dim",
            "n_inner",
            "d_ff",
            "ffn_hidden_size",
            "decoder_ffn_dim",
            "encoder_ffn_dim",
            "dense_intermediate_size",
        ],
        128,
    ),
    **dict.fromkeys(
        [
            "moe_intermediate_size",
            "shared_expert_intermediate_size",
            "expert_intermediate_size",
            "moe_ffn_hidden_size",
        ],
        64,
    ),
    **dict.fromkeys(
        [
            "num_hidden_layers",
            "n_layer",
            "num_layers",
            "n_layers",
            "decoder_layers",
            "encoder_layers",
        ],
        LAYERS,
    ),
    **dict.fromkeys(
        [
            "num_attention_heads",
            "n_head",
            "n_heads",
            "num_heads",
            "decoder_attention_heads",
            "encoder_attention_heads",
        ],
        4,
    ),
    **dict.fromkeys(
        ["num_key_value_heads", "multi_query_group_num", "num_kv_heads", "n_kv_heads"], 2
    ),
    **dict.fromkeys(
        [
            "num_local_experts",
            "num_experts",
            "n_routed_experts",
            "moe_num_experts",
            "num_routed_experts",
        ],
        4,
    ),
    **dict.fromkeys(["num_experts_per_tok", "moe_topk", "top_k", "moe_k"], 2),
    **dict.fromkeys(["n_shared_experts", "num_shared_experts"], 1),
    **dict.fromkeys(["n_group", "topk_group", "first_k_dense_replace"], 1),
    **dict.fromkeys(["vocab_size"], VOCAB),
    **dict.fromkeys(
        [
            "max_position_embeddings",
            "n_positions",
            "n_ctx",
            "max_seq_len",
            "max_sequence_length",
            "seq_length",
        ],
        256,
    ),
    "head_dim": 16,
    "kv_lora_rank": 32,
    "q_lora_rank": 32,
    "qk_rope_head_dim": 16,
    "qk_nope_head_dim": 16,
    "rotary_dim": 16,
    "v_head_dim": 16,
    "tie_word_embeddings": False,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "pad_token_id": 3,
}


def overrides(d: dict) -> dict:
    """The tiny values of every known size attribute in config dict `d`, sub-configs included
    (as partial dicts); passed to the constructor, derived values follow (head dims, per-layer
    types)."""
    out = {}
    for key, value in d.items():
        if isinstance(value, dict):
            sub = overrides(value)
            if sub:
                out[key] = {**value, **sub} if "model_type" in value else sub
        elif key in SIZES and (value is None or isinstance(value, (int, float, bool))):
            out[key] = SIZES[key]
    return out


def shrink(d: dict) -> dict:
    """Config dict `d` with the overrides applied and per-layer lists cut to the new count."""
    old = next((d[k] for k in SIZES if SIZES[k] == LAYERS and isinstance(d.get(k), int)), None)
    out = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out[key] = shrink(value)
        elif key in SIZES and (value is None or isinstance(value, (int, float, bool))):
            out[key] = SIZES[key]
        elif isinstance(value, list) and old and len(value) == old > LAYERS:
            out[key] = value[:LAYERS]
        else:
            out[key] = value
    return out


# tried in order until a forward runs: e.g. multi-head latent attention needs kv heads == heads
VARIANTS: list[dict] = [
    {},
    dict.fromkeys(
        ["num_key_value_heads", "num_kv_heads", "n_kv_heads", "multi_query_group_num"], 4
    ),
]


def candidates(model_type: str):
    """Tiny configs of `model_type`: per variant of the size table, sizes passed to the
    constructor (derived values follow), then the whole shrunk dict (per-layer lists cut)."""
    from transformers import CONFIG_MAPPING

    cls = CONFIG_MAPPING[model_type]
    d = cls().to_dict()
    for key in ("model_type", "transformers_version", "architectures"):
        d.pop(key, None)
    base = dict(SIZES)
    try:
        for variant in VARIANTS:
            SIZES.update(variant)
            yield lambda o=overrides(d): cls(**o)
            yield lambda s=shrink(d): cls.from_dict(s)
    finally:
        SIZES.clear()
        SIZES.update(base)


def tiny_model(model_type: str):
    """A tiny random-init model of `model_type` whose forward runs; raises the first failure."""
    import torch
    from transformers import AutoModelForCausalLM

    first = None
    for make in candidates(model_type):
        try:
            model = AutoModelForCausalLM.from_config(make()).eval()
            with torch.no_grad():
                model(input_ids=torch.randint(4, 260, (1, 8)), use_cache=False)
            return model
        except Exception as exc:  # try the next variant; report the first failure
            first = first or exc
    raise first


def make_tiny_arch(model_type: str, out: Path, seed: int = 0) -> Path:
    """Build, save and return the directory of a tiny random `model_type` causal LM."""
    import torch

    torch.manual_seed(seed)
    model = tiny_model(model_type)
    out = Path(out)
    model.save_pretrained(out, safe_serialization=True)
    save_tokenizer(out)
    return out
