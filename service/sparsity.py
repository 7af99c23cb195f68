"""What a mask must satisfy, parsed from the spec's `sparsity`: the one pattern type of the
contract and the engine. Pure Python, no torch, so the API imports it too."""

from __future__ import annotations

import re
from dataclasses import dataclass

_NM = re.compile(r"^\s*([0-9]+)\s*:\s*([0-9]+)\s*$")
_DECIMAL = re.compile(r"^\s*[0-9]*\.?[0-9]+\s*$")  # no exponent, sign or non-ASCII digits
# N:M group sizes: powers of two up to 32. Sparse kernels use 2:4 (and 4:8); models' widths
# are multiples of 32, so these divide them, while an M such as 5 or 1000 fits no real model.
NM_GROUPS = (2, 4, 8, 16, 32)


@dataclass(frozen=True)
class Pattern:
    """A share `ratio` of zeros (unstructured), or n zeros in every m inputs (N:M)."""

    ratio: float
    n: int = 0
    m: int = 0

    @property
    def is_nm(self) -> bool:
        return self.m > 0

    def __str__(self) -> str:
        return f"{self.n}:{self.m}" if self.is_nm else f"{self.ratio:g}"


def parse_sparsity(value: float | str) -> Pattern:
    """'2:4' -> N:M; 0.5 or '0.5' -> unstructured. Raises ValueError with what is allowed."""
    groups = ", ".join(map(str, NM_GROUPS))
    allowed = (
        f'allowed: a fraction in (0, 1) such as 0.5, or "N:M" with M one of {groups} and '
        '0 < N < M, such as "2:4"'
    )
    if isinstance(value, bool):
        raise ValueError(f"sparsity {value!r} is not valid; {allowed}")
    if isinstance(value, str):
        m = _NM.match(value)
        if m:
            n, mm = int(m.group(1)), int(m.group(2))
            if mm not in NM_GROUPS:
                raise ValueError(
                    f"sparsity {value!r} is not valid: M must be a power of two from 2 to 32; "
                    f"{allowed}"
                )
            if not 0 < n < mm:
                raise ValueError(f"sparsity {value!r} is not valid: need 0 < N < M; {allowed}")
            return Pattern(ratio=n / mm, n=n, m=mm)
        if not _DECIMAL.match(value):
            raise ValueError(f"sparsity {value!r} is not valid; {allowed}")
        value = float(value)
    ratio = float(value)
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"sparsity {value!r} is out of range; {allowed}")
    return Pattern(ratio=ratio)
