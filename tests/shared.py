"""Where ../shared/data is: real public data for tests and benchmarks (CI clones the repo
with shared/ beside it). Free of Django, so benchmarks use the same lookup as the tests."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = next(
    (
        path
        for path in (
            Path(os.environ.get("ASSAY_SHARED_DIR", "/nonexistent")) / "data",
            ROOT.parent / "shared" / "data",
            Path("/work/shared/data"),
        )
        if path.is_dir()
    ),
    ROOT.parent / "shared" / "data",
)
