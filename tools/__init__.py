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


def run_tool(tool: str, main) -> int:
    """`main()`'s exit code; a project error (a damaged or missing input, an unwritable
    output) becomes one sentence naming the tool, exit 2, instead of a traceback."""
    from ig_llm.errors import UserError
    try:
        return main()
    except UserError as err:
        print(f"{tool}: {err}", file=sys.stderr)
        return 2
