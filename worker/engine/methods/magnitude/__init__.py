"""Magnitude pruning: `options.py` (its options and facts), `prune.py` (the math)."""
