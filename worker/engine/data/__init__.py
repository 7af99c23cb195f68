"""Training data as language-model trainers take it: records read, rendered and packed."""
