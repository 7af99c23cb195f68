"""The model on disk and in memory: locate, load (safetensors only), find its decoder layers
and prunable Linears, save."""
