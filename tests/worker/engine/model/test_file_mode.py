"""Every file of a pruned checkpoint gets one mode, what the umask allows (0o666 & ~umask), as a
file opened for writing does; a library writing through mkstemp would leave its file 0600."""

from __future__ import annotations

import os
import stat

import pytest

from service.schemas import CalibrationSpec, PruneSpec
from worker.engine.run import run


@pytest.mark.parametrize(("umask", "load"), [(0o022, "eager"), (0o027, "eager"), (0o022, "lazy")])
def test_every_written_file_has_the_mode_the_umask_allows(
    tiny_model_dir, calib_file, tmp_path, umask, load
):
    cal = CalibrationSpec(dataset=str(calib_file), nsamples=2, seqlen=16)
    spec = PruneSpec(
        model=str(tiny_model_dir("llama")),
        method="magnitude",
        sparsity=0.5,
        calibration=cal,
        device="cpu",
        load=load,
    )
    old = os.umask(umask)
    try:
        run(spec, tmp_path / "out")
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "out").iterdir()}
    assert any(name.endswith(".safetensors") for name in modes) and len(modes) >= 4
    assert modes == dict.fromkeys(modes, 0o666 & ~umask)
