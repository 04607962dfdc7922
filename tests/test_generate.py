"""`ig_llm generate`: a real tiny Cycles dataset, killed with SIGKILL and resumed, must
equal an uninterrupted run; labels' pixel_coords land on their objects; clear errors."""
import json
import os
import signal
import subprocess
import sys
import time
from argparse import Namespace
from pathlib import Path

import pytest

from ig_llm.training.data import generate

# the same Cycles thread count everywhere: with a fixed seed Cycles then reproduces the
# pixels, except that a rare pixel may differ by 1/255 (multithreaded BVH builds)
TINY = ["--count", "6", "--size", "64x48", "--samples", "4", "--condition", "A", "--seed", "5",
        "--threads", "1"]


def _run(out, *extra, **kw):
    argv = [sys.executable, "-m", "ig_llm", "generate", *TINY, "--out", str(out), "--no-progress", *extra]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True, **kw)


def _files(out: Path, sub: str) -> dict:
    return {p.name: p.read_bytes() for p in sorted((out / sub).iterdir()) if not p.name.startswith(".")}


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    p = _run(out, "--workers", "1")
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err.decode()
    return out


def test_layout_and_labels(full_run):
    labels = _files(full_run, "labels")
    assert sorted(labels) == [f"CLEVR_trainA_{i:06d}.json" for i in range(6)]
    assert sorted(_files(full_run, "images")) == [f"CLEVR_trainA_{i:06d}.png" for i in range(6)]
    merged = json.loads((full_run / "scenes.json").read_text())
    assert [s["image_index"] for s in merged["scenes"]] == list(range(6))
    rec = merged["scenes"][0]
    for key in ("image_filename", "split", "objects", "program", "jitter", "condition", "seed",
                "directions", "relationships"):
        assert key in rec
    for o in rec["objects"]:
        assert set(o) >= {"shape", "size", "material", "color", "3d_coords", "rotation", "pixel_coords"}
    assert rec["program"].count("add(") == len(rec["objects"])
    manifest = json.loads((full_run / "manifest.json").read_text())
    assert manifest["width"] == 64 and manifest["samples"] == 4 and manifest["condition"] == "A"


def test_sigkill_then_resume_equals_uninterrupted(full_run, tmp_path):
    out = tmp_path / "killed"
    p = _run(out, "--workers", "2")
    deadline = time.time() + 120
    while time.time() < deadline and not any((out / "labels").glob("CLEVR_*.json")):
        time.sleep(0.05)
    os.killpg(p.pid, signal.SIGKILL)        # the whole process group: parent and workers
    p.wait()
    done = len(list((out / "labels").glob("CLEVR_*.json")))
    assert 1 <= done < 6, "kill came too late to test resuming"

    again = _run(out)                       # without --resume: refused, nothing touched
    _, err = again.communicate(timeout=60)
    assert again.returncode == 2 and b"--resume" in err

    resumed = _run(out, "--resume", "--workers", "1")
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err.decode()
    assert _files(out, "labels") == _files(full_run, "labels")
    _assert_same_images(out, full_run)
    assert (out / "scenes.json").read_bytes() == (full_run / "scenes.json").read_bytes()


def _assert_same_images(a: Path, b: Path) -> None:
    import numpy as np
    from PIL import Image
    imgs_a, imgs_b = _files(a, "images"), _files(b, "images")
    assert sorted(imgs_a) == sorted(imgs_b)
    for name in imgs_a:
        if imgs_a[name] == imgs_b[name]:
            continue
        x = np.asarray(Image.open(a / "images" / name), dtype=int)
        y = np.asarray(Image.open(b / "images" / name), dtype=int)
        diff = np.abs(x - y)
        assert diff.max() <= 2 and (diff > 0).mean() < 0.005, (name, diff.max(), (diff > 0).mean())


def test_pixel_coords_land_on_their_objects(tmp_path):
    from ig_llm.training.data.render import Renderer, read_index_pass
    r = Renderer(96, 64, 2, condition="none", seed=1, split="t", threads=2)
    try:
        hits = total = 0
        for i in range(4):
            label = r.render_index(i, str(tmp_path / f"{i}.png"))
            ids = read_index_pass(r.index_path)     # the index pass of that same render
            for k, o in enumerate(label["objects"], start=1):
                px, py, _ = o["pixel_coords"]
                at = ids[min(63, int(py)), min(95, int(px))]
                assert at != 0, f"image {i} object {k}: background at its pixel_coords"
                hits += at == k
                total += 1
        assert hits / total >= 0.85      # the rest sit behind a nearer object
    finally:
        r.close()


def _args(out, **kw):
    base = dict(condition="A", count=4, size="64x48", samples=4, bounces=4, out=str(out), workers=1, threads=None,
                seed=0, split=None, shard="0/1", resume=False, min_pixels=None, domain="clevr",
                no_progress=True, worker=False)
    base.update(kw)
    return Namespace(**base)


def _main(args) -> int:
    """generate.main under cli.main's contract: a UserError is one sentence and exit 2."""
    from ig_llm.cli import one_sentence
    from ig_llm.errors import UserError
    try:
        return generate.main(args)
    except UserError as err:
        print(f"ig_llm generate: {one_sentence(err)}", file=sys.stderr)
        return 2


def test_clear_errors(tmp_path, capsys):
    assert _main(_args(tmp_path / "a", size="64by48")) == 2
    assert "WxH" in capsys.readouterr().err
    assert _main(_args(tmp_path / "a", shard="3/3")) == 2
    assert "0 <= i < n" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.txt").write_text("mine")
    assert _main(_args(tmp_path / "b", resume=True)) == 2
    assert "no manifest.json" in capsys.readouterr().err
    assert (tmp_path / "b" / "x.txt").read_text() == "mine" and len(list((tmp_path / "b").iterdir())) == 1
    # a dataset with other settings is refused on --resume
    settings = generate.settings_from_args(_args(tmp_path / "c"))
    generate.prepare_out(tmp_path / "c", settings, resume=False)
    assert _main(_args(tmp_path / "c", resume=True, samples=8)) == 2
    assert "samples=4 there but 8 now" in capsys.readouterr().err
    # a larger --count extends the dataset (image i does not depend on it); a smaller one is
    # refused once an image past the new end exists, else it finishes the render smaller
    generate.prepare_out(tmp_path / "c", dict(settings, count=9), resume=True)
    assert json.loads((tmp_path / "c" / "manifest.json").read_text())["count"] == 9
    generate.prepare_out(tmp_path / "c", dict(settings, count=6), resume=True)
    assert json.loads((tmp_path / "c" / "manifest.json").read_text())["count"] == 6
    (tmp_path / "c" / "labels").mkdir(exist_ok=True)
    (tmp_path / "c" / "labels" / "CLEVR_train_000004.json").write_text("{}")
    with pytest.raises(generate.GenerateError, match="holds 1 image.s. past --count 3; --resume can extend a "
                                                     "dataset but not shrink it: pass --count 6 or more"):
        generate.prepare_out(tmp_path / "c", dict(settings, count=3), resume=True)
    assert json.loads((tmp_path / "c" / "manifest.json").read_text())["count"] == 6


def test_controller_never_imports_bpy(tmp_path):
    """The parent only plans, watches and merges: bpy (0.4 GB) loads in the workers only."""
    code = ("import sys; from argparse import Namespace; from ig_llm.training.data import generate as g; "
            f"s = g.settings_from_args(Namespace(**{_args(tmp_path / 'x').__dict__!r})); "
            f"g.prepare_out(g.Path({str(tmp_path / 'x')!r}), s, False); g.write_scenes_json(g.Path({str(tmp_path / 'x')!r}), s); "
            "assert 'bpy' not in sys.modules and 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_index_maps_are_the_per_pixel_truth_and_can_be_added_later(full_run, tmp_path, capsys):
    import shutil

    import numpy as np

    from ig_llm.training.data import index_maps
    maps = _files(full_run, "index")
    assert sorted(maps) == [f"CLEVR_trainA_{i:06d}.npz" for i in range(6)]
    for i in range(6):
        label = json.loads((full_run / "labels" / f"CLEVR_trainA_{i:06d}.json").read_text())
        index = np.load(full_run / "index" / f"CLEVR_trainA_{i:06d}.npz")["index"]
        assert index.shape == (48, 64) and index.dtype == np.uint8
        counts = np.bincount(index.ravel(), minlength=len(label["objects"]) + 1)
        # object k of the label is value k, with exactly the pixels the visibility check counted
        assert counts[1:].tolist() == [o["visible_pixels"] for o in label["objects"]]
    # an older dataset without index/: one command re-renders the maps (1 sample), identically
    old = tmp_path / "old"
    shutil.copytree(full_run, old)
    shutil.rmtree(old / "index")
    (old / "labels" / "CLEVR_trainA_000003.json").unlink()      # an incomplete sample: no map
    assert index_maps.main([str(old), "--threads", "1"]) == 0
    redone = _files(old, "index")
    assert sorted(redone) == sorted(set(maps) - {"CLEVR_trainA_000003.npz"})
    for name, data in redone.items():
        a = np.load(full_run / "index" / name)["index"]
        b = np.load(old / "index" / name)["index"]
        assert (a != b).mean() < 0.002, name       # a rare edge pixel may differ (threaded BVH)
    assert index_maps.main([str(old)]) == 0 and "0 index maps" in capsys.readouterr().err
    assert index_maps.main([str(tmp_path / "missing")]) == 2
    assert "no labels/ folder" in capsys.readouterr().err


def test_without_out_it_renders_into_the_data_home_and_resume_extends_it_byte_identically(full_run, tmp_path):
    """Renders accumulate in the data home (issue #25): `--resume --count N` adds scenes and
    leaves the ones already there byte for byte."""
    home = tmp_path / "home"
    base = [sys.executable, "-m", "ig_llm", "generate", *TINY, "--no-progress", "--workers", "1", "--home", str(home)]
    small = [a if a != "6" else "3" for a in base]
    subprocess.run(small, check=True, capture_output=True, timeout=300)
    out = home / "datasets" / "trainA"
    first = _files(out, "labels")
    assert sorted(first) == [f"CLEVR_trainA_{i:06d}.json" for i in range(3)]
    first_images = _files(out, "images")
    subprocess.run(base + ["--resume"], check=True, capture_output=True, timeout=300)
    labels, images = _files(out, "labels"), _files(out, "images")
    assert len(labels) == 6 and all(labels[k] == v for k, v in first.items())
    assert all(images[k] == v for k, v in first_images.items())
    assert labels == _files(full_run, "labels")      # the extended dataset is the one rendered in one go
    assert json.loads((out / "manifest.json").read_text())["count"] == 6
