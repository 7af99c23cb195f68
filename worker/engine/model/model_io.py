"""Load a causal LM safely (safetensors only, no remote code), find its decoder layers and
prunable Linears generically, and save atomically.
"""

from __future__ import annotations

import fnmatch
import shutil
from pathlib import Path
from typing import Literal, overload

import torch
from torch import nn

from service.model_names import resolve_model
from service.schemas import DTYPES as DTYPE_NAMES
from service.schemas import check_revision
from worker.engine.errors import ModelLoadError, UnsupportedModelError, describe, log
from worker.engine.model.hf_types import HFModule

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
HUB_PATTERNS = [
    "*.safetensors",
    "*.safetensors.index.json",
    "*.json",
    "tokenizer*",
    "*.model",
    "*.tiktoken",
    "*.txt",
]
DTYPES = {name: getattr(torch, name) for name in DTYPE_NAMES if name != "auto"}


@overload
def locate_model(
    model: str,
    revision: str | None = None,
    *,
    models_dir: Path | None = None,
    cache_dir: Path | None = None,
    allow_local: bool = True,
    fetch: Literal[True] = True,
) -> Path: ...
@overload
def locate_model(
    model: str,
    revision: str | None = None,
    *,
    models_dir: Path | None = None,
    cache_dir: Path | None = None,
    allow_local: bool = True,
    fetch: bool,
) -> Path | None: ...
def locate_model(
    model: str,
    revision: str | None = None,
    *,
    models_dir: Path | None = None,
    cache_dir: Path | None = None,
    allow_local: bool = True,
    fetch: bool = True,
) -> Path | None:
    """The directory holding `model`: any local directory (local runs, if `allow_local`), a
    model under `models_dir` (the service; the naming rules of service/model_names.py), or a
    hub id `org/name` downloaded (weights as safetensors only; None instead when not
    `fetch`, which checks the name without any slow work)."""
    local = Path(model).expanduser()
    if allow_local and local.is_dir():
        return local
    try:
        found = resolve_model(model, models_dir)
    except ValueError as exc:
        if allow_local:  # a local run: the name was meant as a directory or a hub id
            raise ModelLoadError(
                f"model {model!r} is neither a local directory nor a hub id of the form org/name"
            ) from None
        raise ModelLoadError(str(exc)) from None
    if found is not None or not fetch:
        return found
    return download(model, revision, cache_dir)


def download(model: str, revision: str | None, cache_dir: Path | None) -> Path:
    """Fetch hub id `model` (safetensors, configs and tokenizer files only)."""
    if revision is not None:
        _check_revision(revision)
    try:
        from huggingface_hub import snapshot_download

        path = snapshot_download(
            model, revision=revision, allow_patterns=HUB_PATTERNS, cache_dir=cache_dir
        )
    except Exception as exc:  # network, auth, missing repo: all end the same way for the user
        raise ModelLoadError(
            f"cannot download {model!r} (revision {revision or 'main'}) from the Hugging Face hub: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    return Path(path)


def _check_revision(revision: str) -> None:
    """Again at the hub read: the cache reads refs/<revision> as a path."""
    try:
        check_revision(revision)
    except ValueError as exc:
        raise ModelLoadError(str(exc)) from None


def check_weights(path: Path) -> None:
    """Refuse a checkpoint without safetensors weights (pickle files can execute code)."""
    if any(path.glob("*.safetensors")):
        return
    pickles = sorted(p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise ModelLoadError(
            f"{path} has only pickle weights ({', '.join(pickles[:3])}); pruneserve loads "
            "safetensors only. Convert it first: save_pretrained(..., safe_serialization=True)"
        )
    raise ModelLoadError(f"{path} has no *.safetensors weights (and no config to load?)")


def check_model_dir(path: Path) -> None:
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"{path} has no config.json: not a Hugging Face model directory")
    check_weights(path)


def load_model(path: Path, dtype: str = "auto"):
    """(model, tokenizer) on CPU in eval mode; trust_remote_code is never enabled."""
    from transformers import AutoConfig, AutoModelForCausalLM

    check_model_dir(path)
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=False)
    except ValueError as exc:
        raise UnsupportedModelError(f"{path}: unsupported configuration: {exc}") from exc
    try:
        model = AutoModelForCausalLM.from_pretrained(
            path,
            dtype=DTYPES.get(dtype, "auto"),
            use_safetensors=True,
            trust_remote_code=False,
            low_cpu_mem_usage=True,
        )
    except ValueError as exc:
        raise UnsupportedModelError(
            f"{path}: {type(config).__name__} is not a causal language model transformers "
            f"supports without remote code ({str(exc).splitlines()[0]})"
        ) from exc
    except OSError as exc:
        raise ModelLoadError(f"{path}: cannot load weights: {exc}") from exc
    except Exception as exc:  # any other failure of transformers' loader: typed, logged
        log.debug("loading %s failed", path, exc_info=True)
        raise UnsupportedModelError(
            f"{path.name}: {type(config).__name__} failed to load: {describe(exc)}"
        ) from exc
    model.eval()
    model.config.use_cache = False
    return model, load_tokenizer(path)


def load_tokenizer(path: Path):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{path}: cannot load the tokenizer: {exc}") from exc


def decoder_layers(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The model's decoder layers: the ModuleList holding the most parameters.

    Generic over architectures (model.layers, transformer.h, gpt_neox.layers, ...).
    """
    best, best_name, best_size = None, "", 0
    for name, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) == 0:
            continue
        if len({type(m) for m in module}) != 1:
            continue
        size = sum(p.numel() for p in module.parameters())
        if size > best_size:
            best, best_name, best_size = module, name, size
    if best is None or not prunable_linears(best[0]):
        raise UnsupportedModelError(
            f"{type(model).__name__}: no ModuleList of decoder layers with Linear weights was found"
        )
    return best_name, best


def is_prunable(module: nn.Module) -> bool:
    """nn.Linear, or GPT-2's Conv1D (a Linear with its weight stored transposed)."""
    return isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D"


def prunable_linears(layer: nn.Module, prefix: str = "", skip=()) -> dict[str, nn.Module]:
    """Linears inside one decoder layer, by full name, minus names matching `skip` patterns."""
    found = {}
    for name, module in layer.named_modules():
        full = f"{prefix}.{name}" if prefix else name
        if is_prunable(module) and not any(fnmatch.fnmatch(full, pat) for pat in skip):
            found[full] = module
    return found


def get_weight(module: HFModule) -> torch.Tensor:
    """The weight as (out, in), whatever the storage layout (an expert slice has its own)."""
    if hasattr(module, "get_weight"):
        return module.get_weight()
    w = module.weight.data
    return w.t() if type(module).__name__ == "Conv1D" else w


def set_weight(module: HFModule, w: torch.Tensor) -> None:
    """Write an (out, in) weight back in the module's own layout and dtype."""
    if hasattr(module, "set_weight"):
        return module.set_weight(w)
    if type(module).__name__ == "Conv1D":
        w = w.t()
    module.weight.data.copy_(w.to(module.weight.dtype))


def matrix_counts(module: nn.Module) -> tuple[int, int]:
    """(weights, zeros) over every weight matrix in `module`: Linear weights, fused expert
    tensors and routers (biases and norms are not matrices)."""
    mats = [p for p in module.parameters() if p.dim() >= 2]
    return sum(p.numel() for p in mats), sum(int((p == 0).sum()) for p in mats)


def decoder_coverage(counts: tuple[int, int], pruned_numel: int) -> tuple[float, float]:
    """(share of zeros, share not pruned) of the decoder's matrices, from `matrix_counts`."""
    total, zeros = counts
    return zeros / max(total, 1), max(0.0, 1 - pruned_numel / max(total, 1))


def save_model(model, tokenizer, directory: Path) -> None:
    """save_pretrained (safetensors) and the tokenizer into a fresh `directory`."""
    shutil.rmtree(directory, ignore_errors=True)
    model.save_pretrained(directory, safe_serialization=True, max_shard_size="2GB")
    tokenizer.save_pretrained(directory)
