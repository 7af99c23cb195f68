"""What a finished run publishes: pruning_report.json, the model card and the plots."""
