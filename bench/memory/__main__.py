"""``python -m bench.memory``, run from the repository root."""

if not __package__:  # run as a path (python bench/memory), the project is not importable
    raise SystemExit("run it as a module from the repository root: python -m bench.memory")

from bench.memory.cli import main

raise SystemExit(main())
