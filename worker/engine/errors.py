"""The few named errors the engine raises; each message says what was wrong and what is allowed."""


class EngineError(Exception):
    """Base of every error the engine raises on purpose."""


class SpecError(EngineError):
    """The request itself is invalid (method, sparsity, options)."""


class ModelLoadError(EngineError):
    """The model cannot be found or loaded (missing, pickle-only, no network)."""


class UnsupportedModelError(EngineError):
    """The model loads but has no decoder-layer ModuleList to walk."""


class CalibrationError(EngineError):
    """Calibration or evaluation data is missing, unreadable or too short."""


class PruningError(EngineError):
    """Numerics failed (e.g. SparseGPT's Cholesky never succeeded)."""


class Cancelled(EngineError):
    """The job was cancelled; raised at a layer boundary."""


class ResourceError(EngineError):
    """The job cannot fit the device's memory (found before the work that would need it)."""
