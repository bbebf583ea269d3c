"""Shared, torch-free contracts of the CodeRL pipeline: outcomes and rewards, problem formats,
execution results, pass@k, configuration and the ``coderl`` command line."""

__version__ = "0.1.0"
