"""`--dry-run`: the plan of a job from the model's config.json alone (no weights): memory per
device for every stage, the settings that make it fit, or a refusal. Exit 0 when it fits, 2
(refused before any work) when it does not; the plan is printed either way."""

from __future__ import annotations

import argparse
from pathlib import Path

from clients.cli.exits import USAGE, CliError
from service.planner.devices import Devices, parse_devices

GiB = 2**30


def add_plan_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan (memory per device of each stage, what makes it fit) from the "
        "model's config.json and exit: 0 if it fits, 2 if not; loads no weights",
    )
    p.add_argument(
        "--plan-for",
        type=_devices_arg,
        default=None,
        metavar="COUNTxSIZE",
        help="with --dry-run: plan for these devices instead of this machine's, e.g. "
        "8x80GiB or 1x24GiB (default: the local GPUs' free memory, else the host's)",
    )


def _devices_arg(text: str) -> str:
    try:
        parse_devices(text)  # checked here, before any work; sent as written
        return text
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def model_config_dir(model: str, revision: str | None) -> Path:
    """The directory holding the model's config.json: the local directory, or the hub cache's
    snapshot (never fetched: a dry run works offline)."""
    local = Path(model).expanduser()
    if local.is_dir():
        return local
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(model, "config.json", revision=revision)
    except Exception:  # an id the hub library refuses is simply not cached
        cached = None
    if isinstance(cached, str):
        return Path(cached).parent
    raise CliError(
        USAGE,
        "ConfigError",
        f"--model {model}: a dry run needs the model's config.json, and {model} is neither a "
        "local directory nor in the hub cache; point --model at a directory holding its "
        "config.json (the weights are not needed)",
    )


def local_devices(device: str) -> Devices:
    """This machine: the visible GPUs (the least free memory of them), or the host."""
    import torch

    from worker.engine.train.memory import available_bytes

    if device != "cpu" and torch.cuda.is_available():
        n = torch.cuda.device_count()
        free = min(available_bytes(torch.device("cuda", i)) for i in range(n))
        return Devices(n, free, "cuda", "local")
    if device == "cuda":
        raise CliError(USAGE, "SpecError", "--device cuda: CUDA is not available here")
    return Devices(1, available_bytes(torch.device("cpu")), "cpu", "local")


def cmd_dry_run(args: argparse.Namespace, spec) -> int:
    from service.planner.plan import plan
    from service.planner.shape import ConfigError, read_config

    try:
        shape = read_config(model_config_dir(spec.model, spec.revision))
    except ConfigError as exc:
        raise CliError(USAGE, "ConfigError", f"--model {spec.model}: {exc}") from None
    devices = parse_devices(args.plan_for) if args.plan_for else local_devices(spec.device)
    result = plan(spec, shape, devices)
    if args.json:
        print(result.model_dump_json(indent=2))
    else:
        print(render(result))
    if not result.fits:
        raise CliError(USAGE, "PlanRefused", result.refusal or "does not fit")
    return 0


def cmd_remote_dry_run(args: argparse.Namespace, client, spec) -> int:
    """`pruneserve submit --dry-run`: the service's plan for the spec (no job)."""
    result = client.plan(spec, plan_for=args.plan_for)
    print(result.model_dump_json(indent=2) if args.json else render(result))
    if not result.fits:
        raise CliError(USAGE, "PlanRefused", result.refusal or "does not fit")
    return 0


def render(result) -> str:
    """The plan as text: one line per stage, the settings it needs, the verdict."""
    m, d = result.model, result.devices
    lines = [
        f"{m['architecture']}: {m['params'] / 1e9:.2f} B parameters ({m['linear_params'] / 1e9:.2f}"
        f" B in decoder Linears), {m['layers']} layers, vocab {m['vocab']}, {m['dtype']}",
        f"devices: {d['label']} {d['kind']} ({d['source']}); usable per device "
        f"{result.usable_bytes_per_device / GiB:.1f} GiB; load {result.load}",
    ]
    for s in result.stages:
        verdict = "fits" if s.fits else "DOES NOT FIT"
        line = f"  {s.name:<12} {s.peak_bytes_per_device / GiB:9.2f} GiB/device  {verdict}"
        if s.host_bytes:
            line += f"  (host holds {s.host_bytes / GiB:.1f} GiB)"
        if s.changes:
            line += f"  with {', '.join(s.changes)}"
        lines.append(line)
    lines.append("plan: fits" if result.fits else f"plan: refused: {result.refusal}")
    return "\n".join(lines)
