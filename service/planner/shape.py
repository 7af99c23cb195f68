"""A model's sizes from its config.json alone (no weights, no torch): what the planner counts."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

MAX_CONFIG_BYTES = 1 << 20  # a config.json is a few KiB; anything larger is not one
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
UNGATED = {"gpt2", "opt", "gpt_neox", "gptj", "bloom", "falcon", "phi"}  # MLP: up, down only
# first key found wins: the names the architectures of transformers give the same size
_KEYS = {
    "hidden": ("hidden_size", "n_embd", "d_model"),
    "layers": ("num_hidden_layers", "n_layer", "num_layers"),
    "heads": ("num_attention_heads", "n_head"),
    "intermediate": ("intermediate_size", "ffn_dim", "n_inner"),
    "experts": ("num_local_experts", "num_experts", "n_routed_experts"),
}


class ConfigError(ValueError):
    """A config.json the planner cannot read; the message names the file and the key."""


@dataclass(frozen=True)
class ModelShape:
    """Sizes in weights (not bytes). Linear weights are the prunable (and trainable) ones."""

    architecture: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int  # of the dense MLP, or of one expert
    vocab: int
    tied: bool
    dtype: str  # the checkpoint's dtype (what eager loading holds when dtype is auto)
    experts: int = 0  # MoE: experts per layer (0: dense MLP)
    experts_per_token: int = 0
    gated: bool = True

    @property
    def attn_linear(self) -> int:
        """q, k, v, o of one layer."""
        q = self.heads * self.head_dim
        return self.hidden * (2 * q + 2 * self.kv_heads * self.head_dim)

    @property
    def mlp_linear(self) -> int:
        one = (3 if self.gated else 2) * self.hidden * self.intermediate
        if not self.experts:
            return one
        return self.experts * one + self.hidden * self.experts  # the router

    @property
    def layer_linear(self) -> int:
        """Pl: the Linear weights of one decoder layer."""
        return self.attn_linear + self.mlp_linear

    @property
    def linear(self) -> int:
        """T: the decoder's Linear weights (what pruning and recovery touch)."""
        return self.layers * self.layer_linear

    @property
    def embeddings(self) -> int:
        """Input embedding plus the output head (once when tied)."""
        return self.vocab * self.hidden * (1 if self.tied else 2)

    @property
    def params(self) -> int:
        """N: every weight (norms included)."""
        return self.linear + self.embeddings + (2 * self.layers + 1) * self.hidden

    @property
    def active_intermediate(self) -> int:
        """MLP width a token passes through (MoE: its experts_per_token experts)."""
        return self.intermediate * max(1, self.experts_per_token if self.experts else 1)

    @property
    def dtype_bytes(self) -> int:
        return DTYPE_BYTES[self.dtype]

    def describe(self) -> dict:
        return {
            "architecture": self.architecture,
            "params": self.params,
            "linear_params": self.linear,
            "layers": self.layers,
            "hidden": self.hidden,
            "intermediate": self.intermediate,
            "heads": self.heads,
            "kv_heads": self.kv_heads,
            "vocab": self.vocab,
            "experts": self.experts,
            "dtype": self.dtype,
        }


def _get(cfg: dict, what: str, default: int | None = None) -> int:
    for key in _KEYS[what]:
        value = cfg.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    if default is not None:
        return default
    raise ConfigError(f"config.json has no positive integer {' / '.join(_KEYS[what])}")


def shape_from_config(cfg: dict) -> ModelShape:
    """The sizes a config.json states; ConfigError naming the key when one is missing."""
    if not isinstance(cfg, dict):
        raise ConfigError("config.json is not a JSON object")
    cfg = {**cfg.get("text_config", {}), **cfg} if isinstance(cfg.get("text_config"), dict) else cfg
    hidden, layers, heads = _get(cfg, "hidden"), _get(cfg, "layers"), _get(cfg, "heads")
    kind = str(cfg.get("model_type", ""))
    vocab = cfg.get("vocab_size")
    if not isinstance(vocab, int) or vocab <= 0:
        raise ConfigError("config.json has no positive integer vocab_size")
    experts = _get(cfg, "experts", 0)
    inter = cfg.get("moe_intermediate_size") if experts else None
    dtype = str(cfg.get("torch_dtype") or cfg.get("dtype") or "float32")
    return ModelShape(
        architecture=(cfg.get("architectures") or [kind or "unknown"])[0],
        hidden=hidden,
        layers=layers,
        heads=heads,
        kv_heads=cfg.get("num_key_value_heads") or heads,
        head_dim=cfg.get("head_dim") or hidden // heads,
        intermediate=inter if isinstance(inter, int) else _get(cfg, "intermediate", 4 * hidden),
        vocab=vocab,
        tied=bool(cfg.get("tie_word_embeddings", kind in {"gpt2", "opt"})),
        dtype=dtype if dtype in DTYPE_BYTES else "float32",
        experts=experts,
        experts_per_token=cfg.get("num_experts_per_tok") or (2 if experts else 0),
        gated=kind not in UNGATED,
    )


def read_config(model_dir: Path) -> ModelShape:
    """The shape of the model in `model_dir` from its config.json (bounded read)."""
    path = Path(model_dir) / "config.json"
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path.name} is over {MAX_CONFIG_BYTES} bytes: not a model config")
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{model_dir} has no config.json") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"config.json cannot be read: {exc}") from None
    return shape_from_config(cfg)
