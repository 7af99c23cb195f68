"""Masks as data: bit-packed without loss, checked against pattern and weights in one place,
and patterns that cannot fit a module refused before any work."""

from __future__ import annotations

import pytest
import torch

from worker.engine.errors import PruningError, SpecError
from worker.engine.prune.mask_state import MaskState, check_fits, pack, unpack
from worker.engine.prune.masks import Pattern, n_of_m


@pytest.mark.parametrize("shape", [(3, 5), (8, 16), (1, 1), (7, 9)])
def test_pack_roundtrip(shape):
    mask = torch.rand(shape, generator=torch.Generator().manual_seed(0)) < 0.5
    packed = pack(mask)
    assert packed.dtype == torch.uint8 and packed.numel() == -(-mask.numel() // 8)
    assert torch.equal(unpack(packed, shape), mask)


def test_check_reports_sparsity_and_nm_from_the_masks():
    w = torch.randn(4, 16)
    mask = n_of_m(w.abs(), 2, 4)
    state = MaskState()
    state.record("a", mask, Pattern(0.5, 2, 4))
    [check] = state.check(lambda name: w.masked_fill(mask, 0))
    assert check.name == "a" and check.shape == (4, 16)
    assert check.sparsity == 0.5 and check.nm_ok is True


def test_check_fails_when_the_pattern_is_not_met():
    w = torch.randn(4, 16)
    mask = n_of_m(w.abs(), 2, 4)
    mask[0, :4] = False  # one group keeps everything
    state = MaskState()
    state.record("a", mask, Pattern(0.5, 2, 4))
    [check] = state.check(lambda name: w.masked_fill(mask, 0))
    assert check.nm_ok is False


def test_check_refuses_weights_that_leak_through_the_mask():
    w = torch.randn(4, 8)
    mask = torch.zeros(4, 8, dtype=torch.bool)
    mask[:, :4] = True
    state = MaskState()
    state.record("layers.0.q", mask, Pattern(0.5))
    pruned = w.masked_fill(mask, 0)
    pruned[2, 1] = 0.3  # a later stage wrote into a pruned position
    with pytest.raises(PruningError, match="layers.0.q: 1 weights the mask prunes are not zero"):
        state.check(lambda name: pruned)


def test_check_refuses_a_module_with_nothing_pruned():
    state = MaskState()
    state.record("m", torch.zeros(2, 64, dtype=torch.bool), Pattern(1e-300))
    with pytest.raises(PruningError, match="prunes no weight"):
        state.check(lambda name: torch.ones(2, 64))


def test_nm_needs_input_widths_that_are_multiples_of_m():
    check_fits({"a": (8, 64)}, Pattern(0.5, 2, 4))
    with pytest.raises(SpecError, match="layers.0.fc has 64 inputs"):
        check_fits({"layers.0.fc": (8, 64)}, Pattern(2 / 3, 2, 3))
    with pytest.raises(SpecError) as exc:
        check_fits({"layers.0.mlp.fc": (8, 48)}, Pattern(1 / 32, 1, 32))
    said = str(exc.value)  # the spec field for API users, the flag for CLI users
    assert "adding a pattern such as '*.mlp.fc' to `skip` (CLI: --skip)" in said, said
    assert "choose an M that divides 48: 2, 4, 8 or 16" in said, said
    with pytest.raises(SpecError, match="multiple of 1000000"):
        check_fits({"a": (8, 64)}, Pattern(1e-6, 1, 1_000_000))


def test_a_sparsity_that_prunes_nothing_is_refused_before_work():
    check_fits({"a": (8, 64)}, Pattern(1 / 64))
    with pytest.raises(SpecError, match="prunes no weight of a .*smallest useful sparsity"):
        check_fits({"a": (8, 64)}, Pattern(1e-300))
