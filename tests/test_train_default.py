"""`ig_llm train-default` end to end at toy sizes: real renders with their per-pixel
truth, dense stage 1, stage 2 with mirror augmentation, its whitened second part (both on
the first N scenes), third part, recoloured tower and fourth part (the first M), fifth part
(the first K) and sixth part (all scenes), predict, evaluate, card — and a second run that finds every step done and
skips it (how a killed run resumes)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("bpy")

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--train-count", "5", "--val-count", "2", "--no-480", "--size", "72x48", "--samples", "2",
        "--render-workers", "1", "--steps", "3", "--batch-size", "2", "--stage1-steps", "2",
        "--stage1-batch-size", "4", "--ft-steps", "2", "--first-count", "3", "--ft2-steps", "2",
        "--mid-count", "4", "--recolour-steps", "2", "--ft3-steps", "2", "--ft4-steps", "2",
        "--ft4-count", "4", "--ft5-steps", "2", "--workers", "0", "--device", "cpu", "--no-install"]


def _train_default(root: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "ig_llm", "train-default", "--root", str(root), *ARGS],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def test_train_default_runs_every_step_and_resumes(tmp_path):
    first = _train_default(tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    data, runs = tmp_path / "data", tmp_path / "runs"
    for name, count in (("trainA", 5), ("valA", 2), ("valB", 2)):
        assert len(list((data / name / "labels").glob("*.json"))) == count
        assert len(list((data / name / "index").glob("*.npz"))) == count      # per-pixel truth kept
    stage1 = json.loads((runs / "default" / "stage1" / "stage1.json").read_text())
    assert stage1["kind"] == "dense" and stage1["images"] == 3          # --first-count: the first 3 only
    card = (runs / "default" / "model" / "card.md").read_text()
    assert "dense per-cell targets" in card and "mirror with probability 0.5" in card
    # stage 2's second part continues the first with whitened tokens on the same 3 scenes, the
    # third on the first 4 (--mid-count)
    part2 = (runs / "default" / "finetune" / "model" / "card.md").read_text()
    assert "initialised from" in part2 and "ZCA-whitened" in part2 and "steps: 2 x" in part2
    assert "data: 3 images" in part2
    part3 = (runs / "default" / "finetune2" / "model" / "card.md").read_text()
    assert "finetune/model" in part3 and "data: 4 images" in part3
    # then the tower continues with recolouring, and a fourth part puts the LM on it
    tower = json.loads((runs / "default" / "recolour_tower" / "stage1" / "stage1.json").read_text())
    assert tower["recolour"] == 0.5 and tower["init"].endswith("stage1") and tower["steps"] == 2
    assert tower["images"] == 4
    part4 = (runs / "default" / "finetune3" / "model" / "card.md").read_text()
    assert "finetune2/model" in part4 and "per-object recolouring p=0.5" in part4 and "data: 4 images" in part4
    # the fifth part: the same tower, the first 4 (--ft4-count), still recoloured
    part5 = (runs / "default" / "finetune4" / "model" / "card.md").read_text()
    assert "finetune3/model" in part5 and "data: 4 images" in part5
    assert "recolouring (colour words follow) with probability 0.5" in part5
    # the sixth: all 5 scenes, still recoloured; the final card has the metrics
    final = runs / "default" / "finetune5" / "model"
    card = (final / "card.md").read_text()
    assert "finetune4/model" in card and "data: 5 images" in card and "## Metrics" in card
    assert "recolouring (colour words follow) with probability 0.5" in card
    assert "vision weights: the initial model's" in card      # still the recoloured tower
    for s in ("A", "B"):
        summary = json.loads((runs / "eval" / "default" / f"{s}.metrics.json").read_text())["summary"]
        assert summary["scenes"] == 2
    # everything is there: a rerun skips each step and changes nothing
    before = (final / "model.safetensors").read_bytes()
    second = _train_default(tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.count("skipped") >= 10
    assert (final / "model.safetensors").read_bytes() == before
