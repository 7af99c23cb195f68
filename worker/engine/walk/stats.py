"""Streaming statistics of a Linear's inputs, accumulated in fp32 over calibration batches.

One `InputStats` serves every Linear that reads the same tensor (q/k/v; gate/up).
"""

from __future__ import annotations

import torch

SAMPLE_TOKENS = 256  # input rows kept to measure reconstruction error
XTX_BLOCKS = 4  # X^T X is symmetric: accumulate only block rows of the upper triangle


def add_xtx_upper(acc: torch.Tensor, x: torch.Tensor, blocks: int = XTX_BLOCKS) -> None:
    """acc[a:b, a:] += x[:, a:b]^T x[:, a:] per column block: ~5/8 of a full X^T X."""
    d = x.shape[1]
    step = -(-d // blocks)
    for a in range(0, d, step):
        b = min(a + step, d)
        acc[a:b, a:].addmm_(x[:, a:b].t(), x[:, a:])


class Scratch:
    """One growable fp32 buffer for the per-batch work of every `InputStats` it is given (the
    fp32 copy of a batch, its squares), so a walk allocates it once instead of per batch."""

    def __init__(self) -> None:
        self._buf: torch.Tensor | None = None

    def take(self, numel: int, device: torch.device) -> torch.Tensor:
        """A flat fp32 tensor of `numel` elements (its contents are not kept between calls)."""
        buf = self._buf
        if buf is None or buf.numel() < numel or buf.device != device:
            self._buf = buf = torch.empty(numel, device=device)
        return buf[:numel]


def _added(t: torch.Tensor | None) -> torch.Tensor:
    """A sum that exists once inputs were added."""
    if t is None:
        raise ValueError("no inputs were added")
    return t


def symmetric_from_upper(upper: torch.Tensor) -> torch.Tensor:
    return torch.triu(upper) + torch.triu(upper, 1).t()


class InputStats:
    """Column norms (Wanda), Hessian (SparseGPT) and a small token sample of one input."""

    def __init__(
        self,
        want_hessian: bool,
        total_tokens: int,
        seqlen: int | None = None,
        scratch: Scratch | None = None,
    ):
        self.want_hessian = want_hessian
        self.scratch = scratch  # shared by the stats of one walk; None: a temporary per batch
        self.seqlen = seqlen  # tokens per calibration sequence (inferred from 3-D input if None)
        self.tokens = 0
        self.sumsq: torch.Tensor | None = None  # (in,) sum over tokens of x_j^2
        self.sum: torch.Tensor | None = None  # (in,) sum over tokens of x_j (DSnoT's mean)
        self._xtx_upper: torch.Tensor | None = None  # (in, in) upper part of sum x x^T
        self.stride = max(1, total_tokens // SAMPLE_TOKENS)
        self._sample: torch.Tensor | None = None  # (SAMPLE_TOKENS, in): every stride-th row
        self._sampled = 0  # rows of it filled

    def add(self, x: torch.Tensor) -> None:
        """x: (B, T, in), or (B*T, in) as OPT's MLP flattens it: one batch of inputs."""
        x2 = x.reshape(-1, x.shape[-1])  # (B*T, in)
        if self.seqlen is None:
            self.seqlen = x.shape[-2] if x.dim() == 3 else x2.shape[0]
        rows, cols = x2.shape
        work = (self.scratch or Scratch()).take(2 * rows * cols, x2.device)
        xf = x2 if x2.dtype == torch.float32 else work[: rows * cols].view(rows, cols).copy_(x2)
        if self.sumsq is None:
            self.sumsq = torch.zeros(cols, device=x2.device)
            self.sum = torch.zeros(cols, device=x2.device)
        ones = torch.ones(1, rows, device=x2.device)
        squares = torch.mul(xf, xf, out=work[rows * cols :].view(rows, cols))
        # (in,) sums as matmuls (they reduce faster than sum(0)), added as the sums were before
        _added(self.sumsq).add_((ones @ squares).reshape(-1))
        _added(self.sum).add_((ones @ xf).reshape(-1))
        if self.want_hessian:
            if self._xtx_upper is None:
                self._xtx_upper = torch.zeros(xf.shape[1], xf.shape[1], device=xf.device)
            add_xtx_upper(self._xtx_upper, xf)
        if self._sampled < SAMPLE_TOKENS:
            if self._sample is None:
                self._sample = x2.new_empty(SAMPLE_TOKENS, cols)
            rows_kept = x2[:: self.stride][: SAMPLE_TOKENS - self._sampled].detach()
            self._sample[self._sampled : self._sampled + rows_kept.shape[0]] = rows_kept
            self._sampled += rows_kept.shape[0]
        self.tokens += x2.shape[0]

    @property
    def nsamples(self) -> float:
        """Calibration sequences seen."""
        return self.tokens / self.seqlen if self.seqlen else 0

    @property
    def xtx(self) -> torch.Tensor | None:
        """(in, in) sum over tokens of x x^T."""
        return None if self._xtx_upper is None else symmetric_from_upper(self._xtx_upper)

    @property
    def col_norm_sq(self) -> torch.Tensor:
        """Wanda's s_j: mean over sequences of ||X_j||^2."""
        return _added(self.sumsq) / max(self.nsamples, 1)

    @property
    def col_mean(self) -> torch.Tensor:
        """E[x_j] over calibration tokens."""
        return _added(self.sum) / max(self.tokens, 1)

    @property
    def col_var(self) -> torch.Tensor:
        """Var[x_j] over calibration tokens (population variance, >= 0)."""
        mean = self.col_mean
        return (_added(self.sumsq) / max(self.tokens, 1) - mean.square()).clamp_min(0)

    @property
    def hessian_upper(self) -> torch.Tensor:
        """SparseGPT's H where only the upper triangle (diagonal included) is meaningful: what a
        Cholesky of the flipped H reads, without building the symmetric matrix. A new tensor."""
        if self._xtx_upper is None:
            raise ValueError("no Hessian was accumulated")
        return self._xtx_upper.mul(2.0 / max(self.nsamples, 1))

    @property
    def hessian(self) -> torch.Tensor:
        """SparseGPT's H = 2/n * sum X X^T, n = number of sequences."""
        xtx = _added(self.xtx)  # a new tensor each time
        return xtx.mul_(2.0 / max(self.nsamples, 1))

    def token_sample(self) -> torch.Tensor:
        """(K, in): up to SAMPLE_TOKENS input rows, every stride-th, in the order seen."""
        if self._sample is None:
            raise ValueError("no inputs were added")
        return self._sample[: self._sampled]


def relative_error(w_dense: torch.Tensor, w_pruned: torch.Tensor, x: torch.Tensor) -> float:
    """||(W - W') X||^2 / ||W X||^2 on sampled calibration inputs x: (K, in)."""
    xf, wd = x.float(), w_dense.float()
    dense = (xf @ wd.t()).reshape(-1)
    err = (xf @ torch.sub(wd, w_pruned.float()).t()).reshape(-1)
    denom = torch.dot(dense, dense).item()  # sums of squares without a squared copy
    return torch.dot(err, err).item() / denom if denom > 0 else 0.0
