"""Gradual magnitude pruning (Zhu & Gupta, 2017): `options.py` (its options and facts),
`task.py` (the training task that prunes on the schedule)."""
