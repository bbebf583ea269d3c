"""The learner memory benchmark (``python -m bench.memory``): peak memory of one learner rank in
one update of a training configuration, at its longest shapes, with random weights."""
