"""`ig_llm bench render` (dataset rendering speed) and `ig_llm bench model` (model speed).

Each target lives in its own module with ``add_arguments(parser)`` / ``main(args)``,
imported only when that target runs and only after the optional packages it needs were
found (``TARGETS``; one sentence names what is missing): `bench render` needs bpy,
`bench model` needs the torch runtime (`model/bench.py`, written by the model side).
Both start worker processes as ``python -m ig_llm``, so an installed extension (inside
Blender) refuses them in one sentence that points at `make bench` in a source checkout.
"""
from __future__ import annotations

import argparse
import importlib

from ..errors import UserError
from ..operators import deps

# target -> (module, help, optional packages it needs: checked before the module is imported)
TARGETS = {
    "render": ("training.bench_render", "seconds per image / images per second of dataset renders", ("bpy",)),
    "model": ("model.bench", "speed of the IG-LLM model (torch and NumPy runtimes)", deps.RUNTIME),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", choices=sorted(TARGETS), help="; ".join(f"{k}: {v[1]}" for k, v in TARGETS.items()))
    # the target's own options are parsed by its module, once it is imported
    parser.add_argument("options", nargs=argparse.REMAINDER, help="options of the target (see `bench TARGET --help`)")


def main(args) -> int:
    module_name, hlp, needs = TARGETS[args.target]
    root = __package__.rsplit(".", 1)[0]
    if root.startswith("bl_ext."):      # installed in Blender: no `python -m ig_llm` for its workers
        raise UserError(f"bench {args.target} times worker processes started as `python -m ig_llm`, which an "
                        "installed extension cannot start: run `make bench` in a clone of the IG-LLM repository "
                        "(its venv has bpy, torch and the rest).")
    deps.require(f"bench {args.target}", needs)
    try:
        module = importlib.import_module(f"{root}.{module_name}")
    except ImportError as err:
        raise UserError(f"bench {args.target} cannot run here ({err}); install the missing package or "
                        "use the environment that has it.") from None
    parser = argparse.ArgumentParser(prog=f"ig_llm bench {args.target}", description=hlp)
    module.add_arguments(parser)
    return int(module.main(parser.parse_args(args.options)) or 0)
