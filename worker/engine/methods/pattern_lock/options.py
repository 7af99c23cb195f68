"""Pattern lock's options (torch-free)."""

from __future__ import annotations

from typing import ClassVar

from worker.engine.methods.options import Options


class PatternLockOptions(Options):
    """Pattern lock (Prune Once for All's transfer step): the mask is the input checkpoint's
    own zeros in every Linear that would be pruned, then `recovery` fine-tunes the kept
    weights on the user's data with that mask fixed; `sparsity` is the pattern the zeros
    are checked against (N:M: the report's nm_ok). Teacher: `teacher`, else the LM loss."""

    RECOVERS: ClassVar[bool] = True
    SELF_TEACHER: ClassVar[bool] = True
    STATISTICS: ClassVar[str] = "none"


OPTIONS = PatternLockOptions
