"""Static Model Pruning (Jiang et al., ACL 2023): `options.py` (its options and facts),
`prune.py` (the one-shot start: the init method's mask and the scores), `task.py` (the learned
mask the training engine trains)."""
