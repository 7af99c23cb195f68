"""What applies a method to a layer: masks and their state, the per-layer pruner, OWL's
layer-wise sparsity, DSnoT's mask refinement and block-wise reconstruction."""
