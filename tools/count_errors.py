"""Where count and l2 go wrong: a diagnosis of one model's predictions on one held-out set.

    .venv/bin/python tools/count_errors.py DATASET_DIR PREDICTIONS.json [--probe STAGE1_DIR] [--json OUT]
        [--subset]   # score only the images PREDICTIONS.json covers (e.g. a sample of a training set)

Prints, from the evaluator's own matching (training/eval/metrics.py):

* l2 on the scenes counted right vs the scenes counted wrong, and l2 per axis (x, y on
  the ground, z = height) — is the location error its own problem or a side effect of
  the count errors (a miss re-pairs the others)?
* every missed true object (unmatched in an under-counted scene): its visible pixels
  (label) and whether the tower saw it — with ``--probe``, the stage-1 network's own
  read-out (one object per heat-map peak) put an object within ``SEEN_M`` of it. "The
  tower saw it, the LM left it out" points at stage 2 (the LM); "neither saw it" at the
  tower (its grid, its input size);
* every extra predicted object (unmatched in an over-counted scene): a duplicate (within
  ``SEEN_M`` of another predicted object) or an object where none stands.
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

SEEN_M = 0.5      # "found": a predicted centre within this many CLEVR units (objects are 0.7-1.4 wide)


def _mean(xs):
    xs = list(xs)
    return sum(xs) / len(xs) if xs else None


def probe_scenes_for(stage1: Path, dataset: Path, records: list[dict]) -> list:
    """The stage-1 network's read-out (stages/tower.probe_scenes) of the images of `records`."""
    import torch
    from ig_llm.model.batching import preprocess_image
    from ig_llm.model.presets import make_config
    from ig_llm.scene.domain import load_domain
    from ig_llm.training.data.dataset import open_source
    from ig_llm.training.stages.tower import colour_yiq, load_dense_model, probe_scenes
    config = make_config("tiny")
    domain = load_domain(config.domain)
    model, source, out = load_dense_model(stage1, config), open_source(str(dataset)), []
    where = {source.record(i)["image_filename"]: i for i in range(len(source))}
    todo = [where[r["image_filename"]] for r in records]
    with torch.no_grad():
        for s in range(0, len(todo), 64):
            x = torch.stack([preprocess_image(source.image(i), config.image_dims) for i in todo[s:s + 64]])
            out += probe_scenes(model(x), domain, colour_yiq(domain))
    return out


def diagnose(records: list[dict], preds: dict, probes: list | None) -> dict:
    """The numbers the module docstring lists, from truth records and predicted records."""
    from ig_llm.scene.program import scene_from_clevr
    from ig_llm.training.eval.metrics import match_objects
    right, wrong, axes = [], [], [[], [], []]
    missed, extra = [], []
    for n, rec in enumerate(records):
        true = scene_from_clevr(rec)
        pred = scene_from_clevr(preds[rec["image_filename"]])
        pairs = match_objects(true.objects, pred.objects)
        d = [math.dist(true.objects[i].loc, pred.objects[j].loc) for i, j in pairs]
        if d:
            (right if len(pred.objects) == len(true.objects) else wrong).append(sum(d) / len(d))
        for i, j in pairs:
            for k in range(3):
                axes[k].append(abs(true.objects[i].loc[k] - pred.objects[j].loc[k]))
        matched_t, matched_p = {i for i, _ in pairs}, {j for _, j in pairs}
        for i, t in enumerate(true.objects):
            if i in matched_t:
                continue
            seen = None
            if probes is not None:
                probe_pairs = match_objects(true.objects, probes[n].objects)
                seen = any(a == i and math.dist(t.loc, probes[n].objects[b].loc) < SEEN_M for a, b in probe_pairs)
            missed.append({"image": rec["image_filename"], "visible_pixels": rec["objects"][i].get("visible_pixels"),
                           "image_pixels": rec.get("width", 0) * rec.get("height", 0), "probe_saw_it": seen})
        for j, p in enumerate(pred.objects):
            if j in matched_p:
                continue
            dup = any(math.dist(p.loc, q.loc) < SEEN_M for k, q in enumerate(pred.objects) if k != j)
            extra.append({"image": rec["image_filename"], "duplicate": dup})
    share = [m["visible_pixels"] / m["image_pixels"] for m in missed if m["visible_pixels"] and m["image_pixels"]]
    seen = [m["probe_saw_it"] for m in missed if m["probe_saw_it"] is not None]
    return {
        "scenes": len(records), "scenes_counted_right": len(right), "scenes_counted_wrong": len(wrong),
        "l2_counted_right": _mean(right), "l2_counted_wrong": _mean(wrong), "l2_all": _mean(right + wrong),
        "abs_err_x": _mean(axes[0]), "abs_err_y": _mean(axes[1]), "abs_err_z": _mean(axes[2]),
        "missed_objects": len(missed),
        "missed_median_visible_share": statistics.median(share) if share else None,
        "missed_probe_saw": sum(seen) if seen else (0 if probes is not None else None),
        "extra_objects": len(extra), "extra_duplicates": sum(e["duplicate"] for e in extra),
        "missed": missed, "extra": extra}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset", type=Path)
    p.add_argument("predictions", type=Path)
    p.add_argument("--probe", type=Path, help="a finished stage-1 folder (RUN/stage1) whose read-out to compare")
    p.add_argument("--json", type=Path, help="write every number (and each missed/extra object) here")
    p.add_argument("--subset", action="store_true", help="score only the images the predictions cover")
    a = p.parse_args(argv)
    from ig_llm.tools import report_missing
    if report_missing("count_errors", ((a.dataset / "scenes.json", "a dataset folder from `ig_llm generate`"),
                                 (a.predictions, "`ig_llm predict` output"))):
        return 2
    from ig_llm.atomic import check_output, write_json
    from ig_llm.training.eval.evaluate import load_scene_records
    if a.json:      # before the work: an unwritable --json must not cost the whole diagnosis
        check_output(a.json, "--json", inputs=(a.predictions,))
    records = load_scene_records(a.dataset / "scenes.json")
    preds = {r["image_filename"]: r for r in load_scene_records(a.predictions)}
    if a.subset:
        records = [r for r in records if r["image_filename"] in preds]
    if not records:
        print(f"count_errors: no image of {a.dataset} has a prediction in {a.predictions}; pass the predictions "
              "of that set.", file=sys.stderr)
        return 2
    lost = [r["image_filename"] for r in records if r["image_filename"] not in preds]
    if lost:
        print(f"count_errors: {a.predictions} has no prediction for {len(lost)} image(s) of {a.dataset} "
              f"(e.g. {lost[0]}); predict the whole set.", file=sys.stderr)
        return 2
    out = diagnose(records, preds, probe_scenes_for(a.probe, a.dataset, records) if a.probe else None)
    for k, v in out.items():
        if k not in ("missed", "extra"):
            print(f"{k:32s} {v:.4f}" if isinstance(v, float) else f"{k:32s} {v}")
    if a.json:
        write_json(a.json, out)
    return 0


if __name__ == "__main__":
    from ig_llm.tools import run_tool
    sys.exit(run_tool("count_errors", main))
