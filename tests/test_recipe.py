"""Recipes (issue #25): a recipe file is checked before any work, runs as one stage 1 and
one stage 2 from an empty data home, a second run does nothing, and a run killed mid-stage
resumes to the same model. No condition-B render is reachable from a training stage."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("bpy")

from ig_llm.training import recipe as rc  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TOY = ROOT / "recipes" / "toy.toml"
RUN = ["--threads", "1", "--render-workers", "1", "--save-every", "2"]


def _runner(home, *extra, **kw):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "ig_llm", "train-recipe", str(TOY), "--home", str(home),
                             *RUN, *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, start_new_session=True, **kw)


@pytest.fixture(scope="module")
def toy_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    proc = _runner(home)
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-4000:]
    return home, out


def _files(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in folder.rglob("*") if p.is_file()}


def test_the_toy_recipe_runs_end_to_end_from_an_empty_home(toy_home):
    home, out = toy_home
    model = home / "runs" / "toy" / "program" / "model"
    assert (model / "config.json").is_file() and (home / "runs" / "toy" / "tower" / rc.TOWER_FILE).is_file()
    metrics = json.loads((home / "runs" / "toy" / "eval" / "toy_valB.metrics.json").read_text())
    assert metrics["summary"]["scenes"] == 3
    card = (model / "card.md").read_text()
    recipe = rc.load_recipe(TOY)
    assert f"sha256 `{recipe.sha256}`" in card and "## Metrics" in card and 'name = "toy"' in card
    # the config names the tower it was trained on by content only: no machine path
    assert json.loads((model / "config.json").read_text())["config"]["vision_weights"] is None
    listing = subprocess.run([sys.executable, "-m", "ig_llm", "home", "--home", str(home)],
                             capture_output=True, text=True, check=True).stdout
    assert "toy_train" in listing and "12 / 12 scenes" in listing and "toy" in listing


def test_a_second_run_does_nothing(toy_home):
    home, _ = toy_home
    before = _files(home)
    proc = _runner(home)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    assert out.count("done, skipped") == 2 + 2 + 2     # 2 datasets, 2 stages, predict + evaluate
    assert _files(home) == before


def test_a_kill_mid_stage_resumes_to_the_same_model(toy_home, tmp_path):
    home, _ = toy_home
    other = tmp_path / "home"
    # the same renders (Cycles may differ by a rare 1/255 between machines' thread timings):
    # this test is about the training stages resuming
    shutil.copytree(home / "datasets", other / "datasets")
    proc = _runner(other)
    ckpts = other / "runs" / "toy" / "program" / "checkpoints"
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None and not list(ckpts.glob("step_*")):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)     # the runner and the `train` it started
    proc.wait()
    assert not (other / "runs" / "toy" / "program" / "model").exists()   # really cut short
    proc = _runner(other)
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-3000:]
    assert "stage 1 (tower): done, skipped" in out
    a = home / "runs" / "toy" / "program" / "model" / "model.safetensors"
    b = other / "runs" / "toy" / "program" / "model" / "model.safetensors"
    assert a.read_bytes() == b.read_bytes()


@pytest.mark.parametrize("edit, says", [
    (lambda t: t.replace("[tower]", "[tower]\nsteppps = 3"), "unknown key tower.steppps"),
    (lambda t: t.replace("steps = 6", 'steps = "six"'), "tower.steps = 'six' is a str; it must be a int"),
    (lambda t: t.replace('[datasets.toy_train]\nrole = "train"\ncondition = "A"',
                         '[datasets.toy_train]\nrole = "train"\ncondition = "B"'),
     "training dataset of condition B"),
    (lambda t: t.replace("seed = 12", "seed = 10"), "uses seed 10, as a training dataset"),
    (lambda t: t.replace('sets = ["toy_valB"]', 'sets = ["toy_train"]'), "a training dataset"),
    (lambda t: t + "\n[kit]\nname = 1\n", "unknown table [kit]"),
    (lambda t: t.replace("[recipe]", "[recipe"), "is not valid TOML"),
])
def test_a_bad_recipe_is_one_sentence_before_any_work(tmp_path, edit, says):
    bad = tmp_path / "bad.toml"
    bad.write_text(edit(TOY.read_text()))
    home = tmp_path / "home"
    proc = subprocess.run([sys.executable, "-m", "ig_llm", "train-recipe", str(bad), "--home", str(home)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and says in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1 and str(bad) in proc.stderr
    assert not home.exists()


@pytest.mark.parametrize("path", sorted((ROOT / "recipes").glob("*.toml")), ids=lambda p: p.name)
def test_no_condition_b_render_is_reachable_from_a_training_stage(path, tmp_path):
    recipe = rc.load_recipe(path)
    places = rc.RunPlaces(tmp_path, recipe.name)
    runtime = rc.Runtime()
    assert all(d.condition == rc.training_condition(path, d) for d in recipe.train_sets)
    assert not any(d.condition in ("B", "heldout") for d in recipe.train_sets)
    for argv in (rc.tower_argv(recipe, places, runtime), rc.program_argv(recipe, places, runtime)):
        data = argv[argv.index("--data") + 1:argv.index("--out")]
        assert data == [str(places.dataset(d)) for d in recipe.train_sets]
        for d in recipe.datasets:
            if d.role == "eval":
                assert str(places.dataset(d)) not in argv


def test_dry_run_prints_every_command_and_changes_nothing(tmp_path):
    out = subprocess.run([sys.executable, "-m", "ig_llm", "train-default", "--home", str(tmp_path / "h"),
                          "--dry-run"], capture_output=True, text=True, check=True).stdout
    assert out.count("todo") == 5 + 2 + 2 * 4 and "--stage 1" in out and "--whiten-features" in out
    assert not (tmp_path / "h").exists()


def _file(folder, name, data: bytes):
    (folder / name).write_bytes(data)
    return folder / name


@pytest.mark.parametrize("make, says", [
    (lambda d: d / "missing.toml", "does not exist"),
    (lambda d: d, "is not a file"),
    (lambda d: _file(d, "empty.toml", b""), "[recipe] lacks name"),
    (lambda d: _file(d, "bin.toml", b"\xff\xfe\x00"), "is not UTF-8 text"),
    (lambda d: _file(d, "huge.toml", b"#" * (rc.MAX_RECIPE_BYTES + 1)), "too large"),
], ids=["missing", "folder", "empty", "corrupt", "oversized"])
def test_a_missing_empty_corrupt_or_huge_recipe_file_is_one_sentence(tmp_path, make, says):
    path = make(tmp_path)
    home = tmp_path / "home"
    proc = subprocess.run([sys.executable, "-m", "ig_llm", "train-recipe", str(path), "--home", str(home)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and says in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert not home.exists()
