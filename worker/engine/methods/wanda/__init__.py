"""Wanda (Sun et al., 2023): `options.py` (its options and facts), `prune.py` (the math)."""
