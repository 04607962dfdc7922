"""The data home (issue #25): where it is, and what `ig_llm home` lists."""
import json
import subprocess
import sys

from ig_llm import home


def test_the_home_is_the_override_then_the_environment_then_the_user_cache(tmp_path, monkeypatch):
    monkeypatch.delenv(home.ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    if sys.platform.startswith("linux"):
        assert home.data_home() == tmp_path / "cache" / "ig_llm"
    monkeypatch.setenv(home.ENV, str(tmp_path / "env"))
    assert home.data_home() == tmp_path / "env"
    assert home.data_home(tmp_path / "flag") == tmp_path / "flag"
    assert home.dataset_dir("trainA") == tmp_path / "env" / "datasets" / "trainA"


def test_home_lists_datasets_with_counts_and_runs_with_their_state(tmp_path):
    ds = tmp_path / "datasets" / "trainA"
    for sub in ("labels", "index", "images"):
        (ds / sub).mkdir(parents=True)
    (ds / "manifest.json").write_text(json.dumps({"count": 40000, "condition": "A", "seed": 0,
                                                  "width": 192, "height": 128}))
    for i in range(3):
        (ds / "labels" / f"CLEVR_trainA_{i:06d}.json").write_text("{}")
        (ds / "index" / f"CLEVR_trainA_{i:06d}.npz").write_bytes(b"")
    (ds / "labels" / ".tmp_x.json").write_text("{}")          # a killed write: not a scene
    (tmp_path / "datasets" / "junk").mkdir()
    stopped = tmp_path / "runs" / "v10" / "checkpoints" / "step_0000120"
    stopped.mkdir(parents=True)
    (stopped / "state.pt").write_bytes(b"")
    done = tmp_path / "runs" / "tower" / "stage1"
    done.mkdir(parents=True)
    (done / "vision.safetensors").write_bytes(b"")

    out = subprocess.run([sys.executable, "-m", "ig_llm", "home", "--home", str(tmp_path)],
                         capture_output=True, text=True, check=True).stdout
    assert "trainA" in out and "3 / 40,000 scenes" in out and "3 index maps" in out
    assert "junk" in out and "not a dataset" in out
    assert "v10" in out and "stopped at step 120 (resumable)" in out
    assert "tower" in out and "finished" in out
    info = json.loads(subprocess.run([sys.executable, "-m", "ig_llm", "home", "--home", str(tmp_path), "--json"],
                                     capture_output=True, text=True, check=True).stdout)
    assert info["datasets"][1]["complete"] == 3 and info["runs"][1]["step"] == 120


def test_an_empty_or_missing_home_lists_nothing_and_a_file_is_one_sentence(tmp_path):
    out = subprocess.run([sys.executable, "-m", "ig_llm", "home", "--home", str(tmp_path / "none")],
                         capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.count("(none)") == 2
    (tmp_path / "file").write_text("x")
    out = subprocess.run([sys.executable, "-m", "ig_llm", "home", "--home", str(tmp_path / "file")],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "is a file, not a folder" in out.stderr and out.stderr.count("\n") == 1
