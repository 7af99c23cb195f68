"""The devices a plan is made for: parsed from `8x80GiB`, `1x24GiB`, or found locally."""

from __future__ import annotations

import re
from dataclasses import dataclass

UNITS = {"MIB": 2**20, "GIB": 2**30, "TIB": 2**40, "MB": 10**6, "GB": 10**9, "TB": 10**12}
_SPEC = re.compile(r"^\s*([0-9]{1,4})\s*[xX×]\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]+)\s*$")
MAX_DEVICES = 1024
ALLOWED = "COUNTxSIZE such as 8x80GiB, 1x24GiB or 2x40GB (units MiB, GiB, TiB, MB, GB, TB)"


@dataclass(frozen=True)
class Devices:
    """`count` devices of `bytes_each`; `kind` cuda (accelerators: the model's host copy lives
    apart) or cpu (one pool: what the host holds counts against it)."""

    count: int
    bytes_each: int
    kind: str = "cuda"
    source: str = "given"  # given (--plan-for) or local (measured free memory)

    @property
    def accelerator(self) -> bool:
        return self.kind != "cpu"

    def describe(self) -> dict:
        return {
            "count": self.count,
            "bytes_each": self.bytes_each,
            "kind": self.kind,
            "source": self.source,
            "label": f"{self.count}x{size_label(self.bytes_each)}",
        }


def size_label(nbytes: int) -> str:
    """80 GiB -> '80GiB'; 19.77 GiB -> '19.8GiB'."""
    size = nbytes / 2**30
    return f"{size:g}GiB" if size == round(size, 1) else f"{size:.1f}GiB"


def parse_devices(text: str) -> Devices:
    """`8x80GiB` -> 8 accelerators of 80 GiB; ValueError naming what is allowed."""
    m = _SPEC.match(text or "")
    if not m:
        raise ValueError(f"plan_for {text!r} is not valid; allowed: {ALLOWED}")
    count, size, unit = int(m.group(1)), float(m.group(2)), m.group(3).upper()
    if unit not in UNITS:
        raise ValueError(f"plan_for {text!r}: unknown unit {m.group(3)!r}; allowed: {ALLOWED}")
    if not 1 <= count <= MAX_DEVICES:
        raise ValueError(f"plan_for {text!r}: the count must be 1 to {MAX_DEVICES}")
    nbytes = int(size * UNITS[unit])
    if not 2**20 <= nbytes <= 2**50:
        raise ValueError(f"plan_for {text!r}: a device's size must be 1 MiB to 1 PiB")
    return Devices(count, nbytes)
