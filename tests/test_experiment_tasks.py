"""`ig_llm experiment 2d | so3` at toy size: render, train, predict, score, table (+ the 2d
error map); a rerun does nothing again; bad input ends in one sentence with exit 2."""
import json
from argparse import Namespace
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("bpy")

from ig_llm.cli import main as cli_main  # noqa: E402
from ig_llm.training.experiments import common  # noqa: E402
from ig_llm.training.experiments import tasks as et  # noqa: E402

TOY = ["--train-count", "3", "--test-count", "2", "--steps", "2", "--batch-size", "2", "--render-workers", "1",
       "--threads", "1", "--stage1-steps", "2"]


def _run(name, root: Path, *extra):
    tower = ["--tower-world", "generic", "--tower-count", "3"] if name == "2d" else []
    return cli_main(["experiment", name, "--out", str(root / "w"), "--results", str(root / "r"), *TOY, *tower,
                     *extra])


def _stamps(folder: Path) -> dict:
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("name", ["2d", "so3"])
def test_experiment_end_to_end_then_nothing_again(name, tmp_path, capsys):
    assert _run(name, tmp_path) == 0
    table = json.loads((tmp_path / "r" / "table.json").read_text())
    labels = [v[0] for v in et.variants(name)]
    assert list(table["rows"]) == labels and len(labels) == (2 if name == "2d" else 8)
    md = (tmp_path / "r" / "table.md").read_text()
    assert all(f"| {label} |" in md for label in labels) and "--train-count 3" in md
    for label, numbers, domain in et.variants(name):
        config = json.loads((tmp_path / "w" / f"{label}_s0" / "model" / "config.json").read_text())
        cfg = config["config"]
        # both: the experiment's dense stage-1 tower, frozen in stage 2
        assert (cfg["domain"], cfg["numbers"], cfg["freeze_vision"]) == (domain, numbers, True)
        assert (cfg["image_size"], cfg["image_height"]) == (et.IMAGE_SIZE, et.IMAGE_SIZE)
    sets = {"2d": ("test", "heldout", "tower"), "so3": ("test", "ood")}[name]
    assert {p.name for p in (tmp_path / "w" / "data").iterdir()} == {"train", *sets}
    tower = tmp_path / "w" / "stage1" / "stage1" / "vision.safetensors"
    assert tower.is_file()
    # the 2d tower saw only the generic world, so3's its own training renders
    s1 = json.loads((tmp_path / "w" / "stage1" / common.RECIPE_FILE).read_text())
    assert s1[s1.index("--data") + 1] == str(tmp_path / "w" / "data" / ("tower" if name == "2d" else "train"))
    if name == "2d":
        generic = json.loads((tmp_path / "w" / "data" / "tower" / "scenes.json").read_text())["scenes"]
        assert len(generic) == 3 and all("style" in rec for rec in generic)
        assert "generic world" in md
    # each variant trained on that tower (its line says so); the saved config names no path
    for v in et.variants(name):
        run = tmp_path / "w" / f"{v[0]}_s0"
        line = json.loads((run / common.RECIPE_FILE).read_text())
        assert line[line.index("--vision-weights") + 1] == str(tower)
        assert json.loads((run / "model" / "config.json").read_text())["config"]["vision_weights"] is None
    if name == "2d":
        png = tmp_path / "r" / "error_map.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "error_map.png" in md
        assert {len(table["error_points"][lb]) for lb in labels} == {2}   # one point per test image
        # tools/probe2d.py reads the same tower directly: one error per test point, split by cells
        from ig_llm.tools.probe2d import tower_errors
        errs = tower_errors(tower.parent, tmp_path / "w" / "data" / "test")
        assert 0.0 <= errs["l2_test"] < 2.0 and set(errs) == {"l2_test", "l2_in_cells", "l2_between_cells"}
        # and the token read: a linear map from the dot's LM token, fitted on the training points
        from ig_llm.tools.probe2d import token_read_errors
        read = token_read_errors(tower.parent, tmp_path / "w" / "data" / "train", tmp_path / "w" / "data" / "test")
        assert set(read) == {"token_read_l2_test", "token_read_l2_in_cells", "token_read_l2_between_cells"}
        assert 0.0 <= read["token_read_l2_test"] < 2.0
    else:
        assert "rot_err_ood" in table["rows"]["6d-head"]
    before = _stamps(tmp_path / "w")
    capsys.readouterr()
    assert _run(name, tmp_path) == 0                  # rerun: no render, training or prediction
    assert "[experiment]" not in capsys.readouterr().out
    assert _stamps(tmp_path / "w") == before
    if name == "2d":                                  # other steps than the runs were made with
        assert _run(name, tmp_path, "--steps", "3") == 2
        assert "was trained with other settings" in capsys.readouterr().err
        assert _stamps(tmp_path / "w") == before


def test_bad_sizes_one_sentence(tmp_path, capsys):
    assert _run("2d", tmp_path, "--steps", "0") == 2
    err = capsys.readouterr().err.strip()
    assert err == "ig_llm experiment: --steps 0 is too small; pass 1 or more."
    assert not (tmp_path / "r").exists() and not (tmp_path / "w").exists()


def test_foreign_dataset_one_sentence(tmp_path, capsys):
    train = tmp_path / "w" / "data" / "train"
    train.mkdir(parents=True)
    (train / "manifest.json").write_text(json.dumps({"domain": "clevr", "condition": "A", "split": "train"}))
    assert _run("so3", tmp_path) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "holds a clevr/A/train dataset, not the so3/id/train one" in err
    assert not (tmp_path / "r" / "table.md").exists()


@pytest.mark.parametrize("world", ["generic", "both"])
def test_so3_has_no_generic_world(world, tmp_path, capsys):
    assert _run("so3", tmp_path, "--tower-world", world) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("ig_llm experiment: experiment so3 has no generic world for its tower; drop --tower-world "
                   f"{world} (its tower trains on its own renders).")
    assert not (tmp_path / "w").exists()


def test_tower_data_per_world():
    folders = {"train": Path("train"), "test": Path("test"), "tower": Path("tower")}
    assert et.tower_data(folders, Namespace(train_count=7, tower_count=None, tower_world="task")) == \
        ([Path("train")], 7)                           # so3: no generic world, no tower_count
    args = Namespace(train_count=7, tower_count=5, tower_world="task")
    assert et.tower_data(folders, args) == ([Path("train")], 7)
    args.tower_world = "generic"
    assert et.tower_data(folders, args) == ([Path("tower")], 5)
    args.tower_world = "both"                          # the training renders first, then the generic world
    assert et.tower_data(folders, args) == ([Path("train"), Path("tower")], 12)
    assert et.needed_sets("2d", args) == ["train", "test", "heldout", "tower"]
    args.tower_world = "task"
    assert et.needed_sets("2d", args) == ["train", "test", "heldout"]


def test_cogent_still_needs_its_folders(tmp_path, capsys):
    assert cli_main(["experiment", "cogent", "--out", str(tmp_path / "w"), "--results", str(tmp_path / "r")]) == 2
    assert "needs --data" in capsys.readouterr().err


def test_pure_parts():
    args = Namespace(image_size=128, steps=5, batch_size=4, train_count=7, stage1_steps=9)
    argv = et.train_argv(Path("run"), Path("data"), "char", "so3:6d", args, seed=3, tower=Path("t.safetensors"))
    assert argv[argv.index("--limit") + 1] == "7"
    assert 'domain="so3:6d"' in argv and "image_height=128" in argv and argv[argv.index("--seed") + 1] == "3"
    assert [v[2] for v in et.variants("so3", ["aa"])] == ["so3:aa", "so3:aa"]
    # a frozen, whitened stage-1 tower, never --train-vision
    assert "--train-vision" not in argv and argv[argv.index("--vision-weights") + 1] == "t.safetensors"
    argv = et.train_argv(Path("run"), Path("data"), "head", "2d", args, seed=0, tower=Path("t.safetensors"))
    assert "--train-vision" not in argv and argv[argv.index("--vision-weights") + 1] == "t.safetensors"
    assert "--whiten-features" in argv
    s1 = et.stage1_argv(Path("s1"), [Path("data")], 11, "2d", args)
    assert s1[s1.index("--stage1-steps") + 1] == "9" and float(s1[s1.index("--hue-prob") + 1]) == 0
    assert s1[s1.index("--limit") + 1] == "11"
    assert et.needed_sets("2d", Namespace(tower_world="task")) == ["train", "test", "heldout"]
    assert et.needed_sets("2d", Namespace(tower_world="generic"))[-1] == "tower"
    # points split by the checkerboard (8 cells: (0, 0) trains, (1, 0) does not)
    pts = [(0.01, 0.01, 0.1), (0.2, 0.01, 0.3), (0.5, 0.5, None)]
    s = et.dot_scores(pts, None, 8)
    assert s["l2_test_in_cells"] == pytest.approx(0.1) and s["l2_test_between_cells"] == pytest.approx(0.3)
    assert s["count_acc_test"] == pytest.approx(2 / 3) and s["l2_heldout"] is None
    assert "| head | 0.2000 | 0.1000 | 0.3000 | — |" in et.markdown_table("2d", {"head": s})


def test_train_mirror_with_a_pose_domain_is_refused(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    rc = cli_main(["train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--mirror", "0.5",
                   "--set", 'domain="so3:aa"', "--set", "max_objects=1", "--steps", "1", "--workers", "0"])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err == ("ig_llm train: --mirror is not implemented for the so3:aa domain (the mirror image of a chiral "
                   "object is no rotation of it); drop --mirror.")
    assert not (tmp_path / "run").exists()


def test_train_recolour_with_a_task_domain_is_refused(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    rc = cli_main(["train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--recolour", "0.5",
                   "--cache-images", "--set", 'domain="2d"', "--set", "max_objects=1", "--steps", "1",
                   "--workers", "0"])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err == ("ig_llm train: --recolour needs CLEVR-style objects with palette colours; the 2d domain has "
                   "none; drop --recolour.")
    assert not (tmp_path / "run").exists()
