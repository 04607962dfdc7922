"""What the experiments share: their error, IG-LLM's predictions on a held-out set, and
one resumable ``ig_llm train`` line run in process (a run folder is reused only for the same
line). Each experiment (cogent, tasks, numbers) imports this module and no other experiment;
the ``experiment`` command (command.py) imports the experiments.
"""
from __future__ import annotations

import json
from pathlib import Path

from ...atomic import write_json
from ...errors import UserError


class ExperimentError(UserError, RuntimeError):
    """An experiment step failed; the message names it and how to continue."""


def igllm_predictions(model_dir, dataset: str, out: Path) -> None:
    """``ig_llm predict`` on one held-out folder, in process."""
    from ...model.inference import Predictor
    from ..eval.predict import collect_images, predict_records
    predictor = Predictor(model_dir=model_dir, device="cpu", batch_size=32)
    records, failed = predict_records(predictor, collect_images([str(Path(dataset) / "images")]), 32)
    if failed:
        raise ExperimentError(f"{len(failed)} image(s) of {dataset} cannot be read (e.g. {failed[0]['path']}); "
                              "re-render that set.")
    write_json(out, {"model": str(model_dir or "default"), "scenes": records})


RECIPE_FILE = "experiment_train.json"   # in each run folder: the train line it was started with


def check_recipe(run: Path, argv: list[str]) -> None:
    """A run folder is reused only for the same training line (sizes, steps, seed, ...)."""
    path = run / RECIPE_FILE
    if path.is_file():
        if json.loads(path.read_text()) != argv:
            raise ExperimentError(f"{run} was trained with other settings (see {path}); pass the sizes it was made "
                                  "with, or another --out.")
    else:
        run.mkdir(parents=True, exist_ok=True)
        write_json(path, argv)


def run_train(run: Path, argv: list[str], product: Path, what: str, threads: int | None = None) -> Path:
    """Run one resumable ``ig_llm train`` line in process unless `product` exists; returns it.
    A run folder is reused only for the same line (check_recipe)."""
    check_recipe(run, argv)
    if not product.is_file():
        from ...cli import command_parser
        argv = argv + (["--threads", str(threads)] if threads else [])   # speed only: not in the recipe
        print(f"[experiment] ig_llm {' '.join(argv)}", flush=True)
        parser, module = command_parser("train")
        module.main(parser.parse_args(argv[1:]))
        if not product.is_file():
            raise ExperimentError(f"Training {run} stopped before {what} was written; rerun the same command "
                                  "to resume.")
    return product
