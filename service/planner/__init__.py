"""The planner: from a model's config.json and a device list, each stage's memory per device,
whether it fits and with which settings, before any weight is loaded. Torch-free, so the API
answers dry runs without the engine."""
