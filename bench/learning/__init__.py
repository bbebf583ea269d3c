"""The learning grid (``python -m bench.learning``): does RL beat SFT alone? Paired significance
tests over seeds on the built-in suite."""
