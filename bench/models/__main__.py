"""``python -m bench.models``, run from the repository root."""

if not __package__:  # run as a path (python bench/models), the project is not importable
    raise SystemExit("run it as a module from the repository root: python -m bench.models")

from bench.models.cli import main

raise SystemExit(main())
