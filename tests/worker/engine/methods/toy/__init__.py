"""A toy method for the registry's tests, laid out as every method is: `options.py` (its
options, torch-free), `prune.py` (its math and `METHOD`)."""
