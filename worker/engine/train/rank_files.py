"""The files through which the worker and its training ranks talk: torch-distributed-free, so
the worker imports them without loading torch.distributed (tens of MB) for one-process jobs."""

CANCEL_FILE = "cancel"  # the worker creates it to stop the ranks at their next step
RESULT_FILE = "result.json"
TRAINED_FILE = "trained.safetensors"
