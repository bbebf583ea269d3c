"""``python -m bench.service``, run from the repository root."""

if not __package__:  # run as a path (python bench/service), the project is not importable
    raise SystemExit("run it as a module from the repository root: python -m bench.service")

from bench.service.cli import main

raise SystemExit(main())
