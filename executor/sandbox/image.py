"""Which harness code a sandbox image carries: the image is labelled with a digest of
executor/harness/*.py at build time (deploy/build-images.sh), and the pool refuses an image
whose digest differs from this checkout's, so a stale image never judges with old code."""

from __future__ import annotations

import hashlib
from pathlib import Path

HARNESS_DIR = Path(__file__).resolve().parent.parent / "harness"
DIGEST_LABEL = "org.coderl.harness"


def harness_digest(directory: Path = HARNESS_DIR) -> str:
    """sha256 of the harness sources concatenated in byte order of their names, 16 hex digits."""
    digest = hashlib.sha256()
    for path in sorted(directory.glob("*.py"), key=lambda p: p.name.encode()):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
