"""The training objective: distillation from the dense teacher, KL(teacher || student) on the
logits at temperature T (scaled by T^2, as Hinton et al.) with weight kl_weight, plus a
weighted LM loss: kl_weight * T^2 * KL + lm_weight * CE (the papers' mix: 0.5 and 0.5, T = 2).

Computed from the last hidden states through the LM head `chunk_tokens(V)` tokens at a time
(`Objective.backward`): per chunk the student's and teacher's logits, the chunk's loss and its
backward into the hidden states; then one backward through the model. Full-vocabulary logits
of student and teacher never exist for the whole micro-batch, only for one chunk.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

CHUNK_ELEMENTS = 1 << 24  # logits per chunk: 64 MiB in fp32 (341 tokens of a 49k vocabulary)

Head = Callable[[torch.Tensor], torch.Tensor]  # hidden (n, H) -> logits (n, V)


def chunk_tokens(vocab: int) -> int:
    """Tokens per chunk of the loss."""
    return max(1, CHUNK_ELEMENTS // max(vocab, 1))


IGNORE = -100  # a label that takes no loss (a chat's prompt tokens)


@dataclass(frozen=True)
class Objective:
    distill: bool
    temperature: float
    lm_weight: float  # 0 with distillation by default; the LM loss alone (1.0) without it
    kl_weight: float = 1.0  # of the distillation term, when distilling

    def __post_init__(self) -> None:
        if not self.distill and self.lm_weight == 0:
            object.__setattr__(self, "lm_weight", 1.0)

    def describe(self) -> str:
        w = "" if self.kl_weight == 1 else f"{self.kl_weight:g} x "
        parts = [f"{w}KL(teacher||student), T={self.temperature:g}"] if self.distill else []
        if self.lm_weight:
            parts.append(f"{self.lm_weight:g} x LM cross-entropy")
        return " + ".join(parts)

    def summed(self, s: torch.Tensor, t: torch.Tensor | None, labels: torch.Tensor) -> torch.Tensor:
        """The loss summed over tokens: s, t logits (n, V), labels (n,) the next tokens."""
        s = s.float()
        loss = s.new_zeros(())
        if self.distill:
            assert t is not None, "distillation needs the teacher's logits"
            T = self.temperature
            kl = F.kl_div(
                F.log_softmax(s / T, dim=-1),
                F.log_softmax(t.float() / T, dim=-1),
                reduction="sum",
                log_target=True,
            )
            loss = loss + self.kl_weight * kl * T * T
        if self.lm_weight:
            loss = loss + self.lm_weight * F.cross_entropy(s, labels, reduction="sum")
        return loss

    def __call__(
        self,
        student: torch.Tensor,
        teacher: torch.Tensor | None,
        ids: torch.Tensor,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """student/teacher logits (B, T, V), ids (B, T): mean loss per predicted token; with
        `labels` (B, T), only where a label is not -100 (a chat's answers), KL included."""
        s = student[:, :-1].flatten(0, 1)  # (B*(T-1), V)
        t = teacher[:, :-1].flatten(0, 1) if teacher is not None else None
        targets = (ids if labels is None else labels)[:, 1:].flatten()
        if labels is not None:
            keep = targets != IGNORE
            if not keep.any():  # a window of prompt only: nothing to learn, a zero with grad
                return student.sum() * 0.0
            s, targets = s[keep], targets[keep]
            t = t[keep] if t is not None else None
        return self.summed(s, t, targets) / s.shape[0]

    def backward(
        self,
        hs: torch.Tensor,
        ht: torch.Tensor | None,
        ids: torch.Tensor,
        heads: tuple[Head, Head | None],
        vocab: int,
        scale: float = 1.0,
        labels: torch.Tensor | None = None,
    ) -> float:
        """`scale` x the mean loss per predicted token of the student's last hidden states hs
        (B, T, H) (with their graph) against the teacher's ht (or None), back-propagated
        chunk by chunk; returns that loss. Equal to `__call__` on the full logits, `labels`
        included (only their tokens other than -100 count)."""
        h = hs[:, :-1].flatten(0, 1)
        th = ht[:, :-1].flatten(0, 1) if ht is not None and self.distill else None
        targets = (ids if labels is None else labels)[:, 1:].flatten()
        if labels is not None:
            keep = targets != IGNORE
            if not keep.any():  # a window of prompt only: nothing to learn
                return 0.0
            h, targets = h[keep], targets[keep]
            th = th[keep] if th is not None else None
        leaf = h.detach().requires_grad_(True)
        teacher_head = heads[1]
        n, step = leaf.shape[0], chunk_tokens(vocab)
        total = leaf.new_zeros((), dtype=torch.float32)
        for a in range(0, n, step):
            with torch.no_grad():
                t = teacher_head(th[a : a + step]) if th is not None and teacher_head else None
            loss = self.summed(heads[0](leaf[a : a + step]), t, targets[a : a + step])
            loss = loss * (scale / n)
            loss.backward()
            total += loss.detach()
            del t, loss
        h.backward(leaf.grad)
        return float(total)
