"""Perplexity, sample generations and task accuracy (lm-evaluation-harness), dense and pruned."""
