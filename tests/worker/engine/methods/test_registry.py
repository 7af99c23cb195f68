"""The method registry: the engine's names are the contract's names, and a new method is one
folder (its options model and its math) and one registry line — it then shows in the API's 422
message, the OpenAPI schema and `--help`, and runs through the engine."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from service.main import create_app
from service.methods import METHODS
from service.schemas import CalibrationSpec, PruneSpec
from service.settings import Settings
from worker.engine.errors import SpecError
from worker.engine.methods import REGISTRY, get_method, register, unregister
from worker.engine.methods.base import Method
from worker.engine.run import run

NAMES = ["magnitude", "wanda", "sparsegpt", "smp", "movement", "gmp", "pattern_lock"]


def test_engine_registry_and_contract_name_the_same_methods():
    assert list(REGISTRY) == list(METHODS) == NAMES
    assert all(isinstance(REGISTRY[name], Method) for name in NAMES)


@pytest.fixture
def toy_method():
    register("toy", "tests.worker.engine.methods.toy")  # one folder and one registry line
    yield METHODS["toy"]
    unregister("toy")


def test_a_method_is_known_only_while_registered(toy_method):
    assert list(REGISTRY)[-1] == "toy" and get_method("toy").fn.__name__ == "toy"
    unregister("toy")
    with pytest.raises(SpecError, match="unknown method 'toy'; allowed: magnitude, wanda"):
        get_method("toy")
    assert list(REGISTRY) == list(METHODS) == NAMES
    register("toy", "tests.worker.engine.methods.toy")  # for the fixture's teardown


def test_a_new_method_appears_everywhere(toy_method, tmp_path, capsys):
    app = create_app(Settings(ENV="development", ARTIFACTS_DIR=tmp_path))
    schema = app.openapi()
    options = schema["components"]["schemas"]["JobCreate"]["properties"]["options"]
    assert "toy options" in [s["title"] for s in options["anyOf"]]
    with TestClient(app) as client:
        r = client.post(
            "/v1/jobs",
            json={"model": "org/m", "method": "nope", "sparsity": 0.5},
            headers={"Authorization": "Bearer dev-key"},
        )
    assert r.status_code == 422
    assert (
        "allowed: magnitude, wanda, sparsegpt, smp, movement, gmp, pattern_lock, toy"
        in r.json()["detail"]
    )

    from clients.cli.main import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["prune", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--centre CENTRE prune the weights nearest this value (toy, default 0.25)" in text
    assert "one of: magnitude, wanda, sparsegpt, smp, movement, gmp, pattern_lock, toy" in text


def test_a_new_method_runs_through_the_engine(toy_method, tiny_model_dir, tmp_path):
    spec = PruneSpec(
        model=str(tiny_model_dir("llama")),
        method="toy",
        sparsity=0.5,
        options={"centre": 0.0},
        device="cpu",
    )
    report = run(spec, tmp_path / "out")
    assert report.spec.options == {"centre": 0.0}
    assert len(report.modules) == 14 and all(m.sparsity == 0.5 for m in report.modules)


def test_options_are_validated_per_method():
    base = {"model": "org/m", "sparsity": 0.5, "calibration": CalibrationSpec()}
    spec = PruneSpec(method="sparsegpt", options={"percdamp": 0.1}, **base)
    assert spec.options == {"blocksize": 128, "percdamp": 0.1}  # stored with its defaults
    assert spec.method_options.percdamp == 0.1
    with pytest.raises(ValueError, match="method 'wanda' has no option 'blocksize'"):
        PruneSpec(method="wanda", options={"blocksize": 64}, **base)
    with pytest.raises(ValueError, match="has no option 'colour'; its options: magnitude_scope"):
        PruneSpec(method="magnitude", options={"colour": "red"}, **base)
    with pytest.raises(ValueError, match="percdamp: Input should be greater than 0"):
        PruneSpec(method="sparsegpt", options={"percdamp": 0}, **base)


def test_the_old_flat_options_object_still_works():
    """Old clients sent every method's options, at their defaults, whatever the method."""
    flat = {"magnitude_scope": "matrix", "blocksize": 128, "percdamp": 0.01}
    spec = PruneSpec(model="org/m", method="wanda", sparsity="2:4", options=flat)
    assert spec.options == {}
    spec = PruneSpec(
        model="org/m",
        method="magnitude",
        sparsity="2:4",
        options={**flat, "magnitude_scope": "row"},
    )
    assert spec.options == {"magnitude_scope": "row"}


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt", "smp", "movement", "gmp"])
def test_a_stored_spec_reads_back_identical(method):
    """What the API stores is what a worker (or an idempotent retry) reads back."""
    spec = PruneSpec(model="org/m", method=method, sparsity="2:4")
    again = PruneSpec.model_validate_json(spec.model_dump_json())
    assert again.model_dump() == spec.model_dump()
    assert spec.options == METHODS[method]().model_dump()
