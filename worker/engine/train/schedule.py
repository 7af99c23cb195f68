"""The cubic sparsity schedule of gradual pruning (Zhu & Gupta, 2017), used by movement and gmp:

    v_t = v_f + (v_0 - v_f) * (1 - (t - t_0) / (n * dt))^3

for t in {t_0, t_0 + dt, ..., t_0 + n * dt} (the pruning steps), held between them; v_0 before
t_0 (warm-up), v_f from t_0 + n * dt on (cool-down: the mask then stays fixed).
And the selector that turns scores into a mask at sparsity v, on the way to a pattern, and
learning-rate rewinding at the pruning steps (`rewound_step`), and the tie rule of scores that
start equal (`ties_by_magnitude`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from worker.engine.prune.masks import Pattern, lowest_k, lowest_per_row, n_of_m


@dataclass(frozen=True)
class Schedule:
    initial: float  # v_0
    final: float  # v_f
    start: int  # t_0
    every: int  # dt
    n: int  # pruning steps after t_0

    def __post_init__(self) -> None:
        if self.n < 1 or self.every < 1 or self.start < 0:
            raise ValueError(f"schedule needs n >= 1, dt >= 1, t_0 >= 0: {self}")

    @property
    def end(self) -> int:
        """The first step at the final sparsity."""
        return self.start + self.n * self.every

    def sparsity_at(self, step: int) -> float:
        if step < self.start:
            return self.initial
        k = min((step - self.start) // self.every, self.n)  # the last pruning step reached
        if k in (0, self.n):  # exactly v_0 and v_f at the ends (no rounding past them)
            return self.initial if k == 0 else self.final
        return self.final + (self.initial - self.final) * (1 - k / self.n) ** 3

    def prunes_at(self, step: int) -> bool:
        """Whether `step` is one of the pruning steps t_0 + k dt (k = 0..n)."""
        return self.start <= step <= self.end and (step - self.start) % self.every == 0

    @property
    def rewind(self) -> tuple[int, int, int]:
        """(t_0, dt, t_0 + n dt): what `rewound_step` needs of the schedule."""
        return self.start, self.every, self.end


def rewound_step(step: int, start: int, every: int, end: int) -> int:
    """Learning-rate rewinding (Renda et al., 2020; Prune Once for All's gmp): the step the
    learning-rate schedule reads at `step` when the pruning steps are t_0, t_0 + dt, ...,
    t_0 + n dt = `end`. The schedule runs over the steps outside the ramp [t_0, end): up to
    t_0 as it is; at every pruning step it goes back to its value at t_0 and follows on from
    there until the next one; from `end` on it continues as if the ramp had taken no steps,
    so it spans steps - (end - t_0) steps in all."""
    if step < start:
        return step
    if step < end:
        return start + (step - start) % every
    return step - (end - start)


def select_at(
    scores: torch.Tensor, ratio: float, pattern: Pattern, scope: str = "row"
) -> torch.Tensor:
    """Pruned mask (True = pruned) of the lowest scores at sparsity `ratio`: per row, or over
    the whole matrix (`scope="matrix"`, as the movement, gmp and SMP papers' code selects).
    For an N:M target every mask is a subset of the N:M mask of the same scores (the n lowest
    of every m), and at ratio n/m it is that mask exactly; the scope is then per row."""
    cols = scores.shape[1]
    if pattern.is_nm:
        nm = n_of_m(scores, pattern.n, pattern.m)
        k = int(round(cols * ratio, 9))
        if k >= int(nm[0].sum()):
            return nm
        return lowest_per_row(torch.where(nm, scores, torch.inf), k)
    if scope == "matrix":
        return lowest_k(scores.flatten(), int(round(scores.numel() * ratio, 9))).view_as(scores)
    return lowest_per_row(scores, int(round(cols * ratio, 9)))


def ties_by_magnitude(scores: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Scores whose exact ties fall by |W| (the lower pruned first). Before any signal every
    score is 0, and the selector's own tie rule (the lower column) would prune the same
    columns in every row; 1e-30 * |W| only orders scores that are equal."""
    if not bool((scores == 0).any()):
        return scores
    return scores.double() + weight.detach().abs().double() * 1e-30
