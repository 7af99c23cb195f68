"""The types of what transformers builds, read duck-typed: a model or module whose attributes
depend on its architecture (`model.base_model`, an experts module's `down_proj`, ...)."""

from typing import Any, TypeAlias

HFModel: TypeAlias = Any  # a transformers PreTrainedModel
HFModule: TypeAlias = Any  # one of its modules, with its architecture's attributes
