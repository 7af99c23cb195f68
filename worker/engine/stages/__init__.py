"""The stages of a run, one module each; worker/engine/run.py plans them."""
