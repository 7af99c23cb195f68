"""Text for the engine: where a dataset lives and its rows, the calibration, evaluation and
training windows, and records read, rendered and packed as trainers take them."""
