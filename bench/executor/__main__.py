"""``python -m bench.executor``, run from the repository root."""

if not __package__:  # run as a path (python bench/executor), the project is not importable
    raise SystemExit("run it as a module from the repository root: python -m bench.executor")

from bench.executor.cli import main

raise SystemExit(main())
