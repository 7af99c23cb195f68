"""Movement pruning (Sanh et al., 2020), hard and soft: `options.py` (its options and facts),
`task.py` (the training task that prunes on the schedule)."""
