"""Speed and learning benchmarks, one package per subject, each run from the repository root as
``python -m bench.<subject>``: executor, service, models, pipeline, learning (bench/README.md)."""
