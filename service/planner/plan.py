"""plan(spec, shape, devices) -> Plan: each stage's peak bytes per device, whether it fits,
the settings that make it fit, or a refusal naming what would fit. Torch-free."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from service.planner import memory
from service.planner.devices import Devices, size_label
from service.planner.memory import TrainSettings
from service.planner.shape import DTYPE_BYTES, ModelShape
from service.schemas import PruneSpec, TrainingSpec

USABLE = 0.9  # of a device's bytes: the rest for the CUDA context, allocator and workspaces
LAZY_SHARE = 0.5  # load auto: lazy above this share of memory (worker/engine/stages/load.py)
GiB = 2**30
MAX_PROCESSES = 1024


class StagePlan(BaseModel):
    """One stage: its peak per device with the settings it would run with."""

    name: str
    fits: bool
    peak_bytes_per_device: int
    host_bytes: int = Field(0, description="what the host holds beside, on accelerators")
    settings: dict[str, Any] = Field(default_factory=dict)
    changes: list[str] = Field(
        default_factory=list, description="what differs from the spec to make the stage fit"
    )
    breakdown: dict[str, int] = Field(default_factory=dict)
    flops: float | None = None
    time_s: float | None = Field(None, description="only where a throughput is known")
    note: str | None = None


class Plan(BaseModel):
    """What `--dry-run` prints and the API's dry_run answers."""

    fits: bool
    model: dict[str, Any]
    devices: dict[str, Any]
    usable_bytes_per_device: int
    load: str
    stages: list[StagePlan]
    refusal: str | None = None


def plan(
    spec: PruneSpec, shape: ModelShape, devices: Devices, reconstruct: bool | None = None
) -> Plan:
    """Plan every stage `spec` runs, on `devices`; `reconstruct` forces the block-wise
    reconstruction stage on or off (default: when the spec asks for it)."""
    usable = int(devices.bytes_each * USABLE)
    wb = DTYPE_BYTES.get(spec.dtype, shape.dtype_bytes)
    trains = spec.training is not None or spec.recovery is not None
    load = _load(spec, shape, wb, usable, devices, trains)
    host = memory.model_bytes(shape, wb, load == "lazy")
    on_host = 0 if devices.accelerator else host  # one pool on a CPU
    cal = spec.calibration
    held = {"model weights": on_host}  # on accelerators the host holds the model, not them
    stages = [_fixed("load", held, on_host, usable, devices, host)]
    if spec.calibrates:
        ids = {"calibration ids (int64)": cal.nsamples * cal.seqlen * 8}
        stages.append(_fixed("calibrate", ids, on_host, usable, devices, host))
    evals = spec.evaluation
    if evals is not None:
        ev = memory.eval_bytes(shape, wb, evals.seqlen)
        stages.append(_fixed("eval_dense", ev, on_host, usable, devices, host))
    if spec.method_options.walks():  # movement and gmp prune only while training
        stats = spec.method_options.statistics()
        walk = memory.walk_bytes(shape, wb, stats, cal.nsamples, cal.seqlen)
        stages.append(_fixed("prune", walk, on_host, usable, devices, host))
        stages[-1].flops = 2 * 2.0 * shape.linear * cal.nsamples * cal.seqlen
        if reconstruct if reconstruct is not None else _asks_reconstruction(spec):
            stages.append(_reconstruct(spec, shape, wb, walk, on_host, usable, devices, host))
    trained = spec.method_options.TRAINED or ("weights",)
    for name, ts, what in (("train", spec.training, trained), ("recover", spec.recovery, None)):
        if ts is not None:
            teacher = _teacher(spec, name, ts)
            # recovery trains only the kept weights; the methods' own training every weight
            kept = 1 - spec.parsed_sparsity.ratio if name == "recover" else 1.0
            how = (teacher, shape, usable, devices, kept, wb)
            stages.append(_train(name, ts, what or ("weights",), *how))
    if evals is not None:
        ev = memory.eval_bytes(shape, wb, evals.seqlen)
        stages.append(_fixed("eval_pruned", ev, on_host, usable, devices, host))
    stages.append(_fixed("save", held, on_host, usable, devices, host))
    fits = all(s.fits for s in stages)
    return Plan(
        fits=fits,
        model=shape.describe(),
        devices=devices.describe(),
        usable_bytes_per_device=usable,
        load=load,
        stages=stages,
        refusal=None if fits else _refusal(stages, devices),
    )


def _asks_reconstruction(spec: PruneSpec) -> bool:
    return getattr(spec, "reconstruction", None) is not None


def _load(spec, shape, wb, usable, devices, trains) -> str:
    if spec.load != "auto":
        return spec.load
    if trains or devices.accelerator:  # the host's memory is not known for given devices
        return "eager"
    return "lazy" if shape.params * wb > LAZY_SHARE * usable else "eager"


def _fixed(name, breakdown, on_host, usable, devices, host) -> StagePlan:
    """A stage with nothing to choose: its terms plus, on a CPU, the model the host holds."""
    if not devices.accelerator and "model weights" not in breakdown:
        breakdown = {"model weights (host)": on_host, **breakdown}
    peak = sum(breakdown.values())
    return StagePlan(
        name=name,
        fits=peak <= usable,
        peak_bytes_per_device=peak,
        host_bytes=host if devices.accelerator else 0,
        breakdown=breakdown,
    )


def _reconstruct(spec, shape, wb, walk, on_host, usable, devices, host) -> StagePlan:
    rec = getattr(spec, "reconstruction", None)
    asked = str(getattr(rec, "precision", "fp32"))
    asked = ("bf16" if devices.accelerator else "fp32") if asked == "auto" else asked
    mb = int(getattr(rec, "micro_batch", 1) or 1)
    cal = spec.calibration
    base = {"model weights (host)": on_host} if not devices.accelerator else {}
    base |= {k: v for k, v in walk.items() if k.startswith(("statistics", "embeddings"))}
    best = None
    for precision in dict.fromkeys((asked, "bf16")):
        for m in _halvings(mb):
            terms = base | memory.reconstruction_bytes(
                shape, wb, cal.nsamples, cal.seqlen, precision, m
            )
            best = (precision, m, terms)
            if sum(terms.values()) <= usable:
                break
        else:
            continue
        break
    precision, m, terms = best
    peak = sum(terms.values())
    changes = [f"precision {precision}"] * (precision != asked)
    changes += [f"micro-batch {m}"] * (m != mb)
    return StagePlan(
        name="reconstruct",
        fits=peak <= usable,
        peak_bytes_per_device=peak,
        host_bytes=host if devices.accelerator else 0,
        settings={"precision": precision, "micro_batch": m},
        changes=changes,
        breakdown=terms,
    )


def _teacher(spec: PruneSpec, stage: str, ts: TrainingSpec) -> bool:
    """A dense copy is held: the teacher (distill) or SMP's frozen dense weights."""
    return ts.distill or (stage == "train" and spec.method_options.walks())


def asked_settings(ts: TrainingSpec, devices: Devices) -> TrainSettings:
    """The settings a training spec asks for: precision auto is bf16 on an accelerator;
    gradient checkpointing left to the engine (None) starts off; the engine always computes
    the loss in chunks of tokens."""
    precision = str(getattr(ts, "precision", "fp32"))
    if precision == "auto":
        precision = "bf16" if devices.accelerator else "fp32"
    return TrainSettings(
        precision=precision,
        checkpointing=bool(getattr(ts, "gradient_checkpointing", False)),
        chunked_loss=True,
        micro_batch=ts.micro_batch,
        processes=int(getattr(ts, "processes", None) or 1),
        offload=str(getattr(ts, "offload", "none")),
    )


LEANER = ({}, {"precision": "bf16"}, {"checkpointing": True}, {"chunked_loss": True})


def candidates(asked: TrainSettings, count: int, offload: bool = True):
    """Settings to try, cheapest change first: the spec's; bf16; + checkpointing; + chunked
    loss; each with the micro-batch halved down to 1; then more processes (FSDP); then all of
    that again with the trained state offloaded to the host (`offload`: where the stage can)."""
    procs = [asked.processes] + [p for p in _doublings(count) if p > asked.processes]
    offloads = dict.fromkeys((asked.offload, "cpu") if offload else (asked.offload,))
    for where in offloads:
        for p in procs:
            lean = asked.but(processes=p, offload=where)
            for step in LEANER:
                lean = lean.but(**step)
                for mb in _halvings(asked.micro_batch):
                    yield lean.but(micro_batch=mb)


def _train(name, ts, trained, teacher, shape, usable, devices, kept, wb) -> StagePlan:
    asked = asked_settings(ts, devices)
    # FSDP ranks and CPU offload are recovery's (and only GPUs gain from them)
    ranks = name == "recover" and devices.accelerator
    count = devices.count if ranks else 1
    tried = None
    for s in candidates(asked, count, offload=ranks):
        terms = memory.training_bytes(shape, trained, teacher, ts.seqlen, s, kept)
        tried = (s, terms)
        if sum(terms.values()) <= usable:
            break
    s, terms = tried
    peak = sum(terms.values())
    tokens = ts.steps * ts.batch_size * ts.seqlen
    passes = 6 + 2 * s.checkpointing + 2 * teacher  # fwd+bwd, recompute, teacher forward
    fits = peak <= usable
    note = None if fits else _what_fits(shape, trained, teacher, ts.seqlen, s, devices, kept)
    return StagePlan(
        name=name,
        fits=fits,
        peak_bytes_per_device=peak,
        host_bytes=memory.training_host_bytes(shape, wb, trained, teacher, s, kept)
        if devices.accelerator
        else 0,
        settings=s.describe(),
        changes=_changes(asked, s),
        breakdown=terms,
        flops=float(passes) * shape.params * tokens,
        note=note,
    )


def _value(v) -> str:
    return ("on" if v else "off") if isinstance(v, bool) else str(v)


def _changes(asked: TrainSettings, s: TrainSettings) -> list[str]:
    out = []
    for key, value in s.describe().items():
        if value != asked.describe()[key]:
            out.append(f"{key.replace('_', ' ')} {_value(value)}")
    return out


def _halvings(n: int) -> list[int]:
    out = [n]
    while out[-1] > 1:
        out.append(out[-1] // 2)
    return out


def _doublings(count: int) -> list[int]:
    out, p = [], 2
    while p < count:
        out.append(p)
        p *= 2
    return out + [count] * (count > 1)


def _refusal(stages: list[StagePlan], devices: Devices) -> str:
    """Which stages do not fit, and what would hold them."""
    parts = []
    for s in (s for s in stages if not s.fits):
        need = s.peak_bytes_per_device / GiB
        note = s.note or f"a device of {need / USABLE:.0f} GiB would hold it"
        parts.append(f"{s.name} needs {need:.1f} GiB per device ({_settings(s)}); {note}")
    return f"does not fit {devices.count} x {size_label(devices.bytes_each)}: " + "; ".join(parts)


def _settings(s: StagePlan) -> str:
    items = [f"{k.replace('_', ' ')} {_value(v)}" for k, v in s.settings.items()]
    return ", ".join(items) or "as asked"


def _what_fits(shape, trained, teacher, seqlen, lean: TrainSettings, devices, kept) -> str:
    """The devices the leanest settings would fit: one larger device, or (accelerators) the
    smallest count of these with FSDP."""

    def peak(settings: TrainSettings) -> int:
        return sum(memory.training_bytes(shape, trained, teacher, seqlen, settings, kept).values())

    one = peak(lean.but(processes=1))
    out = f"one device of {one / USABLE / GiB:.0f} GiB would hold it"
    if not devices.accelerator:
        return out + " (a CPU host trains in one process)"
    usable = devices.bytes_each * USABLE
    for k in range(2, MAX_PROCESSES + 1):
        if peak(lean.but(processes=k)) <= usable:
            return f"{k} x {devices.bytes_each / GiB:g} GiB with processes {k} would; {out}"
    return out
