"""THE one training engine, shared by every training-based method and by recovery: masked
weights as a parametrization (W * M), one loop, one objective, checkpoints for resume."""
