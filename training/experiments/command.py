"""``ig_llm experiment NAME``: the paper's experiments, one command each, resumable, tables
under ``docs/results/``.

    python -m ig_llm experiment cogent --data data/trainA --val data/valA data/valB [--model DIR]
    python -m ig_llm experiment 2d | so3 [--out runs/experiments/NAME] [--results docs/results/NAME]
    python -m ig_llm experiment numbers --data data/trainA --val data/valA data/valB --tower FILE --sizes N ...

``cogent`` — IG-LLM vs an NS-VQA-style per-object parser (cogent.py); ``2d`` and ``so3`` —
parameter-space generalisation, numeric head vs characters and the four rotation
representations (tasks.py); ``numbers`` — CLEVR data efficiency, numeric head vs characters
(numbers.py). This module parses the command line and hands it to the experiment.
"""
from __future__ import annotations

from ...home import add_home_argument, run_dir
from . import cogent, numbers, tasks

EXPERIMENTS = ("cogent", "2d", "so3", "numbers")


def add_arguments(parser) -> None:
    parser.add_argument("name", choices=EXPERIMENTS, help="which experiment")
    parser.add_argument("--out", help="work folder (runs, predictions; 2d/so3 also data/) "
                                      "(default: the data home's runs/experiments/NAME)")
    add_home_argument(parser)
    parser.add_argument("--results", help="folder for the table (markdown + JSON) (default docs/results/NAME)")
    parser.add_argument("--steps", type=int, help="training steps (numbers: each run's, default 1500; cogent: the baselines', default train-default's "
                                                   "stage 1; 2d/so3: each variant's stage 2)")
    g = parser.add_argument_group("cogent, numbers")
    g.add_argument("--data", nargs="+", help="condition-A training folder(s) (required)")
    g.add_argument("--val", nargs="+", help="held-out dataset folders (e.g. valA valB) (required)")
    g.add_argument("--tower", help="numbers: the frozen stage-1 tower (a vision.safetensors) every run shares")
    g.add_argument("--sizes", nargs="+", type=int, default=[],
                   help="numbers: training-set sizes N (the first N scenes of --data)")
    g.add_argument("--model", help="IG-LLM model folder to compare (default: the shipped model)")
    g.add_argument("--seed", type=int, default=1)
    tasks.add_size_arguments(parser)


def main(args) -> int:
    args.out = args.out or str(run_dir(f"experiments/{args.name}", args.home))
    args.results = args.results or f"docs/results/{args.name}"
    if args.name == "numbers":
        return numbers.main(args)
    if args.name != "cogent":
        return tasks.main(args.name, args)
    return cogent.main(args)


__all__ = ["EXPERIMENTS"]
