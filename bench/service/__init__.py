"""The executor service benchmark (``python -m bench.service``): the Redis-stream path against
the in-process executor, side by side."""
