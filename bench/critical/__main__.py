"""``python -m bench.critical``, run from the repository root."""

if not __package__:  # run as a path (python bench/critical), the project is not importable
    raise SystemExit("run it as a module from the repository root: python -m bench.critical")

from bench.critical.grid import main

raise SystemExit(main())
