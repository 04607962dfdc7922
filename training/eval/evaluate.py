"""`ig_llm evaluate`: score predicted scenes against ground truth with the paper's metrics.

    python -m ig_llm evaluate --truth DATASET/scenes.json --pred predictions.json [--out metrics.json]

Both files are CLEVR scene JSON (``{"scenes": [{"image_filename", "objects": [...]}]}``);
`--truth` may also be a dataset folder (its scenes.json, or its labels/ when there is
none) or a packed ``.npz`` dataset. Scenes are joined by the file name of ``image_filename`` (folders ignored).
Pure Python + numpy/scipy.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from ...atomic import check_output, write_json
from ...errors import UserError
from ...scene.program import ProgramError, Scene, scene_from_clevr
from .metrics import METRICS, evaluate_scenes
from .report import format_table


class EvaluationError(UserError, ValueError):
    """Inputs that cannot be scored; the message names the file and the fix."""


def _read_json(path: Path, what: str):
    if not path.is_file():
        raise EvaluationError(f"The {what} file {path} does not exist; pass an existing scenes JSON file.")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise EvaluationError(f"The {what} file {path} is not valid JSON ({err}); regenerate it.") from None
    except OSError as err:
        raise EvaluationError(f"The {what} file {path} cannot be read ({err.strerror}); check its "
                              "permissions or copy it again.") from None


def load_scene_records(path: str | os.PathLike, what: str = "scenes") -> list[dict]:
    """CLEVR scene records from a scenes JSON file, or from a dataset folder."""
    path = Path(path)
    if path.is_dir():
        if (path / "scenes.json").is_file():
            path = path / "scenes.json"
        elif (path / "labels").is_dir():
            labels = sorted((path / "labels").glob("*.json"))
            if not labels:
                raise EvaluationError(f"The {what} folder {path} has no labels; render the dataset first.")
            return [_read_json(p, what) for p in labels]
        else:
            raise EvaluationError(f"The {what} folder {path} has neither scenes.json nor labels/; "
                                  "pass a dataset folder or a scenes JSON file.")
    if path.suffix == ".npz" and path.is_file():   # a packed dataset (training/data/dataset.py)
        from ..data.dataset import DatasetError, PackSource
        try:
            return list(PackSource(path).records)
        except DatasetError as err:
            raise EvaluationError(str(err)) from None
    data = _read_json(path, what)
    records = data.get("scenes") if isinstance(data, dict) else data
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise EvaluationError(f"The {what} file {path} has no list of scene records under \"scenes\"; "
                              "pass a CLEVR scenes JSON file.")
    return records


def _index(records: list[dict], path, what: str) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for i, rec in enumerate(records):
        name = rec.get("image_filename")
        if not name:
            raise EvaluationError(f"Scene {i} in the {what} file {path} has no image_filename; "
                                  "every scene must name its image.")
        key = Path(name).name
        if key in out:
            raise EvaluationError(f"The {what} file {path} lists {key} twice; keep one scene per image.")
        out[key] = rec
    return out


def _scene(rec: dict, path, what: str, domain=None) -> Scene:
    try:
        return scene_from_clevr(rec, domain)
    except (ProgramError, TypeError, ValueError) as err:
        raise EvaluationError(f"Scene {rec.get('image_filename')} in the {what} file {path} "
                              f"is not a valid CLEVR scene ({err}).") from None


def _truth_domain(records, path):
    """The asset kit the truth was rendered from (its records name it), or None (CLEVR)."""
    ref = next((r["domain"] for r in records if isinstance(r.get("domain"), str)), None)
    if ref is None:
        return None
    from ...scene.domain import load_domain
    try:
        return load_domain(ref)
    except FileNotFoundError as err:
        raise EvaluationError(f"The truth file {path} was rendered from the kit {ref!r}, which is not here "
                              f"({str(err).rstrip('.')}); put the kit back and evaluate again.") from None


def evaluate_files(truth_path, pred_path, missing_as_empty: bool = False) -> dict:
    """Score a predictions file against a truth file; returns the JSON report."""
    truth = _index(load_scene_records(truth_path, "truth"), truth_path, "truth")
    preds = _index(load_scene_records(pred_path, "prediction"), pred_path, "prediction")
    extra = sorted(set(preds) - set(truth))
    if extra:
        raise EvaluationError(f"{len(extra)} predicted image(s) are not in the truth file {truth_path} "
                              f"(e.g. {extra[0]}); evaluate against the dataset the images came from.")
    missing = sorted(set(truth) - set(preds))
    if missing and not missing_as_empty:
        raise EvaluationError(f"{len(missing)} of {len(truth)} true image(s) have no prediction in "
                              f"{pred_path} (e.g. {missing[0]}); predict them all, or pass "
                              "--missing-as-empty to score them as empty scenes.")
    names = sorted(truth)
    domain = _truth_domain(truth.values(), truth_path)
    true_scenes = [_scene(truth[n], truth_path, "truth", domain) for n in names]
    pred_scenes = [_scene(preds[n], pred_path, "prediction", domain) if n in preds else Scene([]) for n in names]
    summary, per_scene = evaluate_scenes(true_scenes, pred_scenes, domain)
    summary["missing_predictions"] = len(missing)
    return {"truth": str(truth_path), "pred": str(pred_path), "summary": summary,
            "per_scene": [{"image_filename": n, **m} for n, m in zip(names, per_scene)]}


def add_arguments(parser) -> None:
    parser.add_argument("--truth", required=True, help="ground-truth scenes.json (or a dataset folder or .npz pack)")
    parser.add_argument("--pred", required=True, help="predictions.json written by `ig_llm predict`")
    parser.add_argument("--out", help="write the metrics (summary + per scene) to this JSON file")
    parser.add_argument("--missing-as-empty", action="store_true",
                        help="score true images without a prediction as empty predicted scenes")


def main(args) -> int:
    out = check_output(args.out, "--out", inputs=[args.truth, args.pred]) if args.out else None
    report = evaluate_files(args.truth, args.pred, args.missing_as_empty)
    print(format_table({Path(args.pred).name: report["summary"]}))
    if out is not None:
        write_json(out, report)
        print(f"metrics written to {out}")
    return 0


__all__ = ["EvaluationError", "evaluate_files", "load_scene_records", "METRICS"]
