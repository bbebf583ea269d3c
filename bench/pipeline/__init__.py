"""The pipeline benchmark (``python -m bench.pipeline``): synchronous against decoupled training
end to end, and weight broadcast time against model size."""
