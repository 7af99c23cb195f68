"""The few named errors the engine raises; each message says what was wrong and what is allowed.

`reraise_typed` turns an unexpected exception into one of them: the message names where it
happened, the full traceback goes to the log only (at debug level).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger("worker.engine")
log.addHandler(logging.NullHandler())  # a library: the app (worker, CLI --debug) decides


class EngineError(Exception):
    """Base of every error the engine raises on purpose."""


class SpecError(EngineError):
    """The request itself is invalid (method, sparsity, options)."""


class ModelLoadError(EngineError):
    """The model cannot be found or loaded (missing, pickle-only, no network)."""


class UnsupportedModelError(EngineError):
    """The model loads but cannot be walked: no decoder-layer list, or a layer call fails."""


class CalibrationError(EngineError):
    """Calibration or evaluation data is missing, unreadable or too short."""


class PruningError(EngineError):
    """Numerics failed (e.g. SparseGPT's Cholesky never succeeded), or memory ran out."""


class Cancelled(EngineError):
    """The job was cancelled; raised where a stage checks (a layer, window, step, file)."""


class Interrupted(EngineError):
    """The run stopped for a cause outside the job (its job store stayed unreachable): not a
    failure; its checkpoints are kept and the next attempt resumes from them."""


class RankDied(Interrupted):
    """A process of a sharded training stage died (killed, out of memory): the stage stops
    cleanly, its last checkpoint is kept, and the next attempt resumes from it."""


class ResourceError(EngineError):
    """The job cannot fit the device's memory (found before the work that would need it)."""


def describe(exc: BaseException) -> str:
    """`Type: first line of the message`, short enough for a job's error field."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__


@contextmanager
def reraise_typed(where: str, error: type[EngineError] = UnsupportedModelError) -> Iterator[None]:
    """Inside the block, an exception that is not an EngineError becomes `error` (out of memory:
    PruningError) with a message naming `where`; the traceback is logged, not shown."""
    try:
        yield
    except EngineError:
        raise
    except Exception as exc:
        log.debug("%s failed", where, exc_info=True)
        # by name: this module stays importable without torch (torch.OutOfMemoryError)
        if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
            raise PruningError(f"{where}: out of memory ({describe(exc)})") from exc
        raise error(f"{where} failed: {describe(exc)}") from exc
