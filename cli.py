"""One command line for `python -m ig_llm …` and `blender --background --command ig_llm …`.

Every user-fixable error is a :class:`.errors.UserError`; ``main`` prints it as one
sentence on stderr and returns 2. Each command lives in its own module, which exposes ``add_arguments(parser)`` and
``main(args) -> int``. A module is imported only when its command runs, so `--help` is
instant and nothing heavy (torch, bpy) loads for commands that do not need it.

Each command names the optional packages it needs in :data:`COMMANDS` (import names;
Blender itself brings bpy and NumPy). ``main`` checks them before the command's module is
imported or anything is written, so in a plain Blender a command either runs or refuses
with one sentence that names what is missing, the Preferences button that installs it and
a ``pip`` line (``operators/deps.py``). ``bench`` checks its targets the same way.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import NamedTuple

from .errors import UserError
from .operators import deps


class Command(NamedTuple):
    module: str                 # relative to this package
    help: str                   # one line
    needs: tuple = ()           # optional packages (import names) that Blender does not bring


COMMANDS = {
    "demo": Command("demo", "Turn the example image into a .blend scene with the shipped model",
                    ("bpy",) + deps.BUNDLED_MODULES),
    "build": Command("scene.build_command", "Build a scene program into a .blend (optionally render it)",
                     ("bpy",)),
    "generate": Command("training.data.generate", "Render a CLEVR / CoGenT dataset with Cycles", ("bpy",)),
    "train": Command("training.stages.train", "Train an IG-LLM model (stage 1 vision tower, stage 2 program)",
                     deps.RUNTIME),
    "train-default": Command("training.recipe",
                             "Run the shipped model's recipe (recipes/clevr.toml): render, stage 1, stage 2, "
                             "evaluate, in the data home (resumable)", deps.RUNTIME),
    "train-recipe": Command("training.recipe", "Run a recipe file: its renders, one stage 1, one stage 2, its "
                            "evaluation (resumable; --dry-run shows the commands)", deps.RUNTIME),
    "predict": Command("training.eval.predict", "Predict scene programs for images (CLEVR scenes JSON out)",
                       deps.BUNDLED_MODULES),
    "evaluate": Command("training.eval.evaluate", "Score predictions against ground truth (paper metrics)", ("scipy",)),
    "experiment": Command("training.experiments.command", "The paper's experiments as one command each (cogent: IG-LLM vs "
                          "an NS-VQA-style parser; 2d: head vs characters; so3: rotation representations)",
                          deps.RUNTIME),
    "bench": Command("training.bench", "Benchmarks: `bench render`, `bench model`"),   # per target: bench.TARGETS
    "package": Command("tools.package", "Build the installable extension zip with Blender's own tool"),
    "home": Command("home", "List the data home: datasets (scenes rendered) and runs (step, state)"),
}

PROG = "ig_llm"


def _top_parser() -> argparse.ArgumentParser:
    epilog = "commands:\n" + "\n".join(f"  {name:<14} {hlp}" for name, (_, hlp, _) in COMMANDS.items())
    p = argparse.ArgumentParser(prog=PROG, description="IG-LLM for Blender: image -> editable 3D scene.",
                                epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=sorted(COMMANDS), metavar="COMMAND", help="one of the commands below")
    return p


def command_parser(name: str) -> tuple[argparse.ArgumentParser, object]:
    module_name, hlp, _ = COMMANDS[name]
    module = importlib.import_module(f".{module_name}", __package__)
    parser = argparse.ArgumentParser(prog=f"{PROG} {name}", description=hlp)
    module.add_arguments(parser)
    return parser, module


def one_sentence(err: UserError) -> str:
    """The error's message on one line, ending in a full stop."""
    text = " ".join(str(err).split())
    return text if text.endswith((".", "!", "?")) else text + "."


def _asks_help(argv) -> bool:
    return any(a in ("-h", "--help") for a in argv)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        _top_parser().print_help()
        return 0
    if argv[0] not in COMMANDS:
        _top_parser().parse_args(argv[:1])  # prints the usage error and exits 2
    name = argv[0]
    try:
        # before the module is imported or anything is written; `--help` still works where
        # the module imports without what is missing
        missing = deps.missing_modules(COMMANDS[name].needs)
        if missing and not _asks_help(argv[1:]):
            raise UserError(deps.requirement_sentence(name, missing))
        try:
            parser, module = command_parser(name)
        except ImportError:
            if not missing:
                raise
            raise UserError(deps.requirement_sentence(name, missing)) from None
        args = parser.parse_args(argv[1:])
        return int(module.main(args) or 0)
    except UserError as err:     # the one place a user's error becomes a sentence and exit 2
        print(f"{PROG} {name}: {one_sentence(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG} {name}: cancelled.", file=sys.stderr)
        return 130
