"""Pattern lock (Prune Once for All's transfer step): `options.py` (its options and facts),
`prune.py` (the mask: the input checkpoint's own zeros)."""
