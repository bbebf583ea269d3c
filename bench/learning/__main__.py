"""``python -m bench.learning``, run from the repository root."""

if not __package__:  # run as a path (python bench/learning), the project is not importable
    raise SystemExit("run it as a module from the repository root: python -m bench.learning")

from bench.learning.grid import main

raise SystemExit(main())
