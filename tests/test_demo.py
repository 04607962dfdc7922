"""`ig_llm demo` (the README's main job): bad input ends in one sentence, writes nothing."""
import subprocess
import sys


def _demo(tmp_path, *args):
    cmd = [sys.executable, "-m", "ig_llm", "demo", "--out", str(tmp_path / "o.blend"),
           "--render", str(tmp_path / "r.png"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)


def _written(tmp_path):
    return sorted(p.name for p in tmp_path.iterdir() if p.suffix in (".blend", ".png") and p.name != "bad.png")


def test_missing_image_is_one_sentence_and_writes_nothing(tmp_path):
    result = _demo(tmp_path, "--image", str(tmp_path / "missing.png"))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "does not exist" in result.stderr
    assert _written(tmp_path) == []


def test_corrupt_image_is_one_sentence_and_writes_nothing(tmp_path):
    (tmp_path / "bad.png").write_text("not an image")
    result = _demo(tmp_path, "--image", str(tmp_path / "bad.png"))
    assert result.returncode == 2 and "cannot be read as an image" in result.stderr
    assert _written(tmp_path) == []


def test_bad_compare_path_is_refused_before_any_work(tmp_path):
    result = _demo(tmp_path, "--compare", str(tmp_path / "no_such_dir" / "c.png"))
    assert result.returncode == 2 and "--compare" in result.stderr
    assert _written(tmp_path) == []
