"""The policy model benchmark (``python -m bench.models``): batched against one-at-a-time
sampling, and the time of a training step."""
