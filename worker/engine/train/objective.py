"""The training objective: distillation from the dense teacher, KL(teacher || student) on the
logits at temperature T (scaled by T^2, as Hinton et al.), plus a weighted LM loss."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Objective:
    distill: bool
    temperature: float
    lm_weight: float  # 0 with distillation by default; the LM loss alone (1.0) without it

    def __post_init__(self) -> None:
        if not self.distill and self.lm_weight == 0:
            object.__setattr__(self, "lm_weight", 1.0)

    def describe(self) -> str:
        parts = [f"KL(teacher||student), T={self.temperature:g}"] if self.distill else []
        if self.lm_weight:
            parts.append(f"{self.lm_weight:g} x LM cross-entropy")
        return " + ".join(parts)

    def __call__(
        self,
        student: torch.Tensor,
        teacher: torch.Tensor | None,
        ids: torch.Tensor,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """student/teacher logits (B, T, V), ids (B, T): mean loss per predicted token; with
        `labels` (B, T), only where a label is not -100 (a chat's answers), KL included."""
        s = student[:, :-1].float().flatten(0, 1)  # (B*(T-1), V)
        targets = (ids if labels is None else labels)[:, 1:].flatten()
        keep = targets != -100 if labels is not None else None
        if keep is not None:
            if not keep.any():  # a window of prompt only: nothing to learn, a zero with grad
                return student.sum() * 0.0
            s, targets = s[keep], targets[keep]
        loss = s.new_zeros(())
        if self.distill:
            t = teacher[:, :-1].float().flatten(0, 1)
            t = t[keep] if keep is not None else t
            T = self.temperature
            kl = F.kl_div(
                F.log_softmax(s / T, dim=-1), F.log_softmax(t / T, dim=-1),
                reduction="batchmean", log_target=True,
            )  # fmt: skip
            loss = loss + kl * T * T
        if self.lm_weight:
            loss = loss + self.lm_weight * F.cross_entropy(s, targets)
        return loss
