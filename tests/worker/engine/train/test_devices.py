"""Every training task keeps the tensors it creates on the device of the module they serve,
checked without a GPU: the model on the `meta` device, every torch call checked for mixed
devices (tests/support/device_check.py). FakeTensorMode's fake `cuda` tensors were tried
first: on a CPU-only torch build they abort the process in the device guard."""

from __future__ import annotations

import pytest
import torch

from tests.support.device_check import META, DeviceMismatch, SameDevice
from tests.worker.engine.train.stages import TASKS, run_stage
from worker.engine.train.masked import FixedMask, attach


def test_the_check_catches_a_cpu_mask_on_an_accelerator_weight():
    lin = torch.nn.Linear(4, 4).to(META)
    mask = FixedMask(torch.zeros(4, 4, dtype=torch.bool), False)
    torch.nn.utils.parametrize.register_parametrization(lin, "weight", mask, unsafe=True)
    with SameDevice(), pytest.raises(DeviceMismatch, match="cpu, meta"):
        lin(torch.ones(2, 4, device=META))  # what Recovery.attach built before: a CPU mask


def test_attach_moves_the_mask_to_the_weight():
    lin = torch.nn.Linear(4, 4).to(META)
    attach(lin, FixedMask(torch.zeros(4, 4, dtype=torch.bool), False), master=True)
    with SameDevice():
        assert lin(torch.ones(2, 4, device=META)).device == META


@pytest.mark.parametrize("kind", TASKS)
def test_every_training_task_runs_with_the_model_on_another_device(kind, tiny_model_dir, tmp_path):
    with SameDevice():
        result, model, dense, _ = run_stage(  # no recompute: autograd's thread is unchecked
            kind, tiny_model_dir("llama"), tmp_path, device=META, checkpointing=False
        )
    assert len(result.loss) == 3 and result.masks
    assert all(m.device.type == "cpu" for m in result.masks.values())  # masks come back home
    assert all(p.device == META for p in model.parameters())
    assert all(p.device.type == "cpu" for p in dense.parameters())  # the teacher goes back
