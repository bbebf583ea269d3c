"""python -m driver: the training driver (what `ray job submit ... -- python -m driver` runs).

The same as `coderl train`; see `python -m driver --help`.
"""

from __future__ import annotations

import sys

from coderl.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
