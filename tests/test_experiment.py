"""`ig_llm experiment cogent`: IG-LLM next to the NS-VQA-style baseline, one table, resumable;
the baseline's predictions file scores exactly as its in-memory decoding."""
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from ig_llm.cli import main as cli_main  # noqa: E402
from ig_llm.training.experiments.cogent import BASELINES  # noqa: E402
from ig_llm.training.data.synthetic import make_synthetic_dataset  # noqa: E402


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("cogent")
    train = make_synthetic_dataset(root / "trainA", 16, seed=3, width=96, height=64)
    val = make_synthetic_dataset(root / "valA", 5, seed=4, width=96, height=64)
    return root, train, val


def test_cogent_table_and_resume(sets, tmp_path, capsys):
    root, train, val = sets
    out, results = tmp_path / "work", tmp_path / "results"
    argv = ["experiment", "cogent", "--data", str(train), "--val", str(val), "--out", str(out),
            "--results", str(results), "--steps", "2"]
    assert cli_main(argv) == 0
    rows = json.loads((results / "table.json").read_text())
    assert set(rows) == {"IG-LLM (shipped default)", *BASELINES}
    for row in rows.values():
        assert row["valA"]["scenes"] == 5
    table = (results / "table.md").read_text()
    assert all(name in table for name in BASELINES) and "| valA |" in table
    # the baselines are real stage-1 runs: no augmentation, hue rotation, hue rotation + recolouring
    runs = [json.loads((out / f"baseline{i}" / "stage1" / "stage1.json").read_text()) for i in range(len(BASELINES))]
    assert [(r["hue_prob"] > 0, r["recolour"] > 0) for r in runs] == [(False, False), (True, False), (True, True)]
    # a rerun trains and predicts nothing again
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.predictions.json")}
    assert len(stamps) == 4
    assert cli_main(argv) == 0
    assert stamps == {p: p.stat().st_mtime_ns for p in out.rglob("*.predictions.json")}
    assert "[experiment]" not in capsys.readouterr().out.split("# CoGenT")[-1]
    # another shipped model (other weights under the same path) is predicted again, the baselines are not
    (out / "igllm" / "model.txt").write_text("the weights of an older model\n")
    assert cli_main(argv) == 0
    again = {p: p.stat().st_mtime_ns for p in out.rglob("*.predictions.json")}
    assert [p.parent.name for p in again if again[p] != stamps[p]] == ["igllm"]


def test_baseline_file_scores_like_its_decoding(sets, tmp_path):
    """What the JSON carries is what the network decoded: same metrics either way."""
    from ig_llm.model.presets import make_config
    from ig_llm.scene.domain import load_domain
    from ig_llm.training.experiments.baseline import predict_baseline
    from ig_llm.training.data.dataset import open_source
    from ig_llm.training.eval.evaluate import evaluate_files
    from ig_llm.training.stages.tower import load_dense_model, probe_metrics
    _, train, val = sets
    run = tmp_path / "run"
    assert cli_main(["train", "--data", str(train), "--out", str(run), "--stage", "1", "--stage1-steps", "2",
                     "--stage1-batch-size", "4", "--threads", "1", "--quiet", "--workers", "0"]) == 0
    predict_baseline(run / "stage1", val, tmp_path / "pred.json")
    from_file = evaluate_files(Path(val) / "scenes.json", tmp_path / "pred.json")["summary"]
    config = make_config("tiny")
    direct = probe_metrics(load_dense_model(run / "stage1", config), open_source(val), config.image_dims,
                           load_domain(config.domain))
    for metric in ("count_acc", "shape_acc", "color_acc", "material_acc", "size_acc"):
        assert from_file[metric] == direct[metric], metric
    if direct["l2"] is not None:
        assert from_file["l2"] == pytest.approx(direct["l2"], abs=1e-3)


def test_missing_inputs_one_sentence(tmp_path, capsys):
    rc = cli_main(["experiment", "cogent", "--data", str(tmp_path / "nope"), "--val", str(tmp_path / "nope2"),
                   "--out", str(tmp_path / "w"), "--results", str(tmp_path / "r")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "ig_llm generate" in err
    assert not (tmp_path / "r").exists()


def test_numbers_curve_head_and_char_per_size_then_nothing_again(sets, tmp_path, capsys):
    """`experiment numbers`: one stage-2 run per (number format, N) on one frozen tower, scored
    on --val, a table and a plot; a rerun trains and predicts nothing again."""
    _, train, val = sets
    tower_run = tmp_path / "tower"
    assert cli_main(["train", "--data", str(train), "--out", str(tower_run), "--stage", "1", "--stage1-steps", "2",
                     "--stage1-batch-size", "4", "--workers", "0", "--quiet"]) == 0
    tower = tower_run / "stage1" / "vision.safetensors"
    out, results = tmp_path / "work", tmp_path / "results"
    argv = ["experiment", "numbers", "--data", str(train), "--val", str(val), "--tower", str(tower),
            "--sizes", "8", "4", "--steps", "2", "--batch-size", "2", "--threads", "1",
            "--out", str(out), "--results", str(results)]
    assert cli_main(argv) == 0
    table = json.loads((results / "table.json").read_text())
    assert set(table) == {"head", "char"} and all(set(table[k]) == {"4", "8"} for k in table)
    assert table["char"]["4"]["valA"]["scenes"] == 5
    for numbers in ("head", "char"):
        for n in (4, 8):
            run = out / f"{numbers}_n{n:05d}"
            cfg = json.loads((run / "model" / "config.json").read_text())["config"]
            # the tower's weights are in the checkpoint, so its config names no machine path; the card says
            assert (cfg["numbers"], cfg["freeze_vision"], cfg["vision_weights"]) == (numbers, True, None)
            card = (run / "model" / "card.md").read_text()
            assert f"data: {n} images" in card and str(tower) in card
    md = (results / "table.md").read_text()
    assert "| head | 4 | valA |" in md and "--sizes 4 8" in md
    assert (results / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert cli_main(argv) == 0
    assert "[experiment]" not in capsys.readouterr().out
    assert stamps == {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}


@pytest.mark.parametrize("drop, message", [
    ("--tower", "experiment numbers needs --tower, a stage-1 vision.safetensors"),
    ("--sizes", "--sizes needs training-set sizes of 1 or more, not none"),
    ("", "t.safetensors cannot be read"),           # the tower file is not a safetensors file
])
def test_numbers_curve_bad_input_one_sentence(sets, tmp_path, capsys, drop, message):
    _, train, val = sets
    import numpy as np
    from safetensors.numpy import save_file
    save_file({"visual.stem.weight": np.zeros(1, np.float32)}, str(tmp_path / "t.safetensors"))
    if drop == "":                                # damaged: not a safetensors file at all
        (tmp_path / "t.safetensors").write_bytes(b"x")
    opts = {"--tower": [str(tmp_path / "t.safetensors")], "--sizes": ["4"]}
    argv = ["experiment", "numbers", "--data", str(train), "--val", str(val), "--out", str(tmp_path / "w"),
            "--results", str(tmp_path / "r")]
    for flag, values in opts.items():
        if flag != drop:
            argv += [flag, *values]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.count("\n") == 0
    assert not (tmp_path / "w").exists() and not (tmp_path / "r").exists()
