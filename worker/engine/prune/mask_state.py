"""Masks as data: per pruned module, a boolean mask (True = pruned) and the pattern it must
satisfy. The prune stage fills it; later stages respect it; the final checks run on it here.

Masks are kept bit-packed (1 bit per weight) so holding every module's mask costs 1/32 of
the fp32 weights.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from service.sparsity import NM_GROUPS
from worker.engine.errors import PruningError, SpecError
from worker.engine.prune.masks import Pattern, check_n_of_m

_BITS = torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.uint8)


def pack(mask: torch.Tensor) -> torch.Tensor:
    """bool (out, in) -> uint8 of ceil(out*in / 8) bytes."""
    flat = mask.detach().to("cpu", torch.bool).reshape(-1)
    pad = (-flat.numel()) % 8
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    return (flat.reshape(-1, 8).to(torch.uint8) * _BITS).sum(dim=1, dtype=torch.uint8)


def unpack(packed: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    bits = packed.reshape(-1, 1).bitwise_and(_BITS).ne(0).reshape(-1)
    return bits[: shape[0] * shape[1]].reshape(shape)


@dataclass
class ModuleMask:
    shape: tuple[int, int]  # (out, in)
    pattern: Pattern
    packed: torch.Tensor

    def mask(self) -> torch.Tensor:
        return unpack(self.packed, self.shape)


@dataclass(frozen=True)
class MaskCheck:
    """What the final check found for one module."""

    name: str
    shape: tuple[int, int]
    sparsity: float  # share of the module's weights that are pruned
    nm_ok: bool | None  # every complete group of m has >= n pruned (N:M patterns only)


class MaskState:
    """The masks of every pruned module, in pruning order."""

    def __init__(self) -> None:
        self.modules: dict[str, ModuleMask] = {}

    def record(self, name: str, mask: torch.Tensor, pattern: Pattern) -> None:
        rows, cols = mask.shape
        self.modules[name] = ModuleMask((rows, cols), pattern, pack(mask))

    def state_dict(self) -> dict[str, Any]:
        """Every mask: `packed` the bits (tensors), `masks` their shape and pattern (JSON)."""
        return {
            "packed": {name: mm.packed for name, mm in self.modules.items()},
            "masks": {
                name: [list(mm.shape), mm.pattern.ratio, mm.pattern.n, mm.pattern.m]
                for name, mm in self.modules.items()
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, (shape, ratio, n, m) in state["masks"].items():
            rows, cols = shape
            packed = state["packed"][name]
            self.modules[name] = ModuleMask((rows, cols), Pattern(ratio, n, m), packed)

    def __iter__(self) -> Iterator[tuple[str, ModuleMask]]:
        return iter(self.modules.items())

    def __len__(self) -> int:
        return len(self.modules)

    def check(
        self, weight_of: Callable[[str], torch.Tensor], names: list[str] | None = None
    ) -> list[MaskCheck]:
        """Check every mask (or those of `names`) against its pattern and against the weights
        (`weight_of(name)`: the (out, in) weight now in the model): pruned weights must be
        exactly zero."""
        out = []
        chosen = self if names is None else ((n, self.modules[n]) for n in names)
        for name, mm in chosen:
            mask = mm.mask()
            w = weight_of(name)
            if tuple(w.shape) != mm.shape:
                raise PruningError(f"{name}: weight {tuple(w.shape)} no longer matches its mask")
            leaked = int((w.detach().cpu()[mask] != 0).sum())
            if leaked:
                raise PruningError(f"{name}: {leaked} weights the mask prunes are not zero")
            pruned = int(mask.sum())
            if pruned == 0:
                raise PruningError(
                    f"{name}: sparsity {mm.pattern} prunes no weight of this {mm.shape[0]} x "
                    f"{mm.shape[1]} matrix; choose a larger sparsity"
                )
            p = mm.pattern
            nm_ok = check_n_of_m(mask, p.n, p.m) if p.is_nm else None
            out.append(MaskCheck(name, mm.shape, pruned / mask.numel(), nm_ok))
        return out


def check_fits(shapes: dict[str, tuple[int, int]], pattern: Pattern) -> None:
    """Before any work: every module can carry `pattern` (N:M needs an input width that is a
    multiple of M; a fraction must prune at least one weight per row)."""
    for name, (_, cols) in shapes.items():
        if pattern.is_nm and cols % pattern.m:
            raise SpecError(
                f"sparsity {pattern} needs every pruned Linear's input width to be a multiple of "
                f"{pattern.m}; {name} has {cols} inputs: {_keep_dense_or_fit(name, cols)}"
            )
        if not pattern.is_nm and pattern.ratio * cols < 1:
            raise SpecError(
                f"sparsity {pattern} prunes no weight of {name} (each row has {cols} inputs); "
                f"the smallest useful sparsity for it is {1 / cols:.3g}"
            )


def _keep_dense_or_fit(name: str, cols: int) -> str:
    """What to do about a module N:M groups do not divide. The engine cannot tell which
    interface the spec came from, so it names the spec field and the CLI flag."""
    parts = name.split(".")
    glob = "*." + ".".join(parts[-2:]) if len(parts) > 2 else name
    hint = f"keep it dense by adding a pattern such as {glob!r} to `skip` (CLI: --skip)"
    fits = [str(m) for m in NM_GROUPS if cols % m == 0]
    if not fits:
        return hint
    listed = fits[0] if len(fits) == 1 else f"{', '.join(fits[:-1])} or {fits[-1]}"
    return f"{hint}, or choose an M that divides {cols}: {listed}"
