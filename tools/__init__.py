"""Research tools beside the product (worst-case sheets, error diagnoses, figures)."""
from __future__ import annotations

import sys
from pathlib import Path


def report_missing(tool: str, needed: tuple[tuple[Path, str], ...]) -> bool:
    """Print one sentence for the first (path, what to pass) whose file is missing; True if one was."""
    for path, what in needed:
        if not Path(path).is_file():
            print(f"{tool}: {path} does not exist; pass {what}.", file=sys.stderr)
            return True
    return False
