"""``python -m bench.pipeline``, run from the repository root."""

if not __package__:  # run as a path (python bench/pipeline), the project is not importable
    raise SystemExit("run it as a module from the repository root: python -m bench.pipeline")

from bench.pipeline.cli import main

raise SystemExit(main())
