"""SparseGPT (Frantar & Alistarh, 2023): `options.py` (its options and facts), `prune.py` (the
math)."""
