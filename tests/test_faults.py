"""The fault table: every user-fixable failure of every command is one sentence.

Each case breaks one input of one command (predict, build, generate, train, evaluate,
package, and the Blender operator) and asserts the error contract of issue 12: exit code
2 (an error report for the operator), one line on stderr that names the file and says
the fix, no traceback, no temp file left, every file that was there before byte-identical
(and nothing new unless the command is meant to write it), the Blender scene unchanged.
Commands run in-process through ``cli.main`` so the table stays fast; the models are
tiny and shared (module fixtures).
"""
import json
import re
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from PIL import Image  # noqa: E402

from ig_llm.atomic import TEMP_PREFIX  # noqa: E402
from ig_llm.cli import main as cli_main  # noqa: E402
from ig_llm.model.checkpoint import save_checkpoint  # noqa: E402
from ig_llm.model.igllm import IGLLM  # noqa: E402
from ig_llm.model.tokenizer import ProgramTokenizer  # noqa: E402
from ig_llm.training.data.synthetic import make_synthetic_dataset  # noqa: E402
from model_helpers import micro_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
READ_ONLY = Path("/sys/ig_llm_fault_test")          # not writable, even for root
FIX_WORDS = re.compile(r"\b(use|pass|give|choose|delete|fix|free|check|downscale|save|rename|copy|restore|"
                       r"write|point|train|render|pick|drop|lower|predict|rerun|resume|re-export|re-save|"
                       r"regenerate|evaluate|run|remove|keep|scale|retrain|create|start|install)\b", re.I)
PROGRAM = "add(shape='cube', color='red', material='metal', size='large', loc=(-1.0, 2.0, 0.7))\n"
TINY = ["--set", "image_size=32", "--set", "patch_size=8", "--set", "vision_width=64", "--set", "vision_layers=1",
        "--set", "vision_heads=2", "--set", "lm_hidden=64", "--set", "lm_layers=1", "--set", "lm_intermediate=128",
        "--set", "lm_max_positions=512"]
TRAIN = ["--threads", "1", "--quiet", "--workers", "0", "--steps", "2", "--batch-size", "2", *TINY]


# -- shared inputs ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """A tiny saved model and a tiny rendered-looking dataset, made once."""
    root = tmp_path_factory.mktemp("shared")
    torch.manual_seed(0)
    model = IGLLM(micro_config(), ProgramTokenizer.build("clevr"))
    save_checkpoint(model, root / "model", card="test model")
    make_synthetic_dataset(root / "data", 4, seed=1, width=48, height=32)
    return root


def png_header(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims width x height (the pixels are not there: a bomb)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def png(path: Path, size=(24, 16)) -> Path:
    Image.new("RGB", size, (120, 130, 140)).save(path)
    return path


def model_copy(shared, w: Path, damage: str) -> Path:
    d = w / "model"
    shutil.copytree(shared / "model", d)
    if damage == "heads":
        cfg = json.loads((d / "config.json").read_text())
        cfg["config"]["lm_heads"] = 5
        (d / "config.json").write_text(json.dumps(cfg))
    elif damage == "zero":
        cfg = json.loads((d / "config.json").read_text())
        cfg["config"]["lm_layers"] = 0
        (d / "config.json").write_text(json.dumps(cfg))
    elif damage == "nan":
        from safetensors.torch import load_file, save_file
        st = load_file(str(d / "model.safetensors"))
        k = next(k for k in st if st[k].is_floating_point())
        st[k][0] = float("nan")
        save_file(st, str(d / "model.safetensors"), metadata={"format": "ig_llm-checkpoint-1"})
    elif damage == "truncated":
        data = (d / "model.safetensors").read_bytes()
        (d / "model.safetensors").write_bytes(data[:len(data) // 2])
    elif damage == "json":
        (d / "config.json").write_text("{ not json")
    return d


def dataset_copy(shared, w: Path) -> Path:
    d = w / "data"
    shutil.copytree(shared / "data", d)
    return d


# -- the cases -------------------------------------------------------------------------------
# each: (id, setup(shared, w) -> (argv, name in the message, files the command may write))
def _predict(args, name, writes=()):
    return ["predict", "--quiet", "--device", "cpu", *args], name, writes


CASES = {
    # predict
    "predict-out-is-folder": lambda s, w: _predict([str(png(w / "a.png")), "--model", str(s / "model"),
                                                    "--out", str(w)], str(w)),
    "predict-out-under-file": lambda s, w: _predict([str(png(w / "a.png")), "--model", str(s / "model"),
                                                     "--out", str(png(w / "b.png") / "x.json")], "b.png"),
    "predict-out-read-only": lambda s, w: _predict([str(png(w / "a.png")), "--model", str(s / "model"),
                                                    "--out", str(READ_ONLY / "p.json")], str(READ_ONLY)),
    "predict-out-is-input": lambda s, w: _predict([str(png(w / "a.png")), "--model", str(s / "model"),
                                                   "--out", str(w / "a.png")], "a.png"),
    "predict-model-missing": lambda s, w: _predict([str(png(w / "a.png")), "--model", str(w / "nope"),
                                                    "--out", str(w / "p.json")], "nope"),
    "predict-model-bad-heads": lambda s, w: _predict([str(png(w / "a.png")), "--model",
                                                      str(model_copy(s, w, "heads")), "--out", str(w / "p.json")],
                                                     "config.json"),
    "predict-model-zero-layers": lambda s, w: _predict([str(png(w / "a.png")), "--model",
                                                        str(model_copy(s, w, "zero")), "--out", str(w / "p.json")],
                                                       "config.json"),
    "predict-model-nan": lambda s, w: _predict([str(png(w / "a.png")), "--model", str(model_copy(s, w, "nan")),
                                                "--out", str(w / "p.json")], "model.safetensors"),
    "predict-model-truncated": lambda s, w: _predict([str(png(w / "a.png")), "--model",
                                                      str(model_copy(s, w, "truncated")), "--out",
                                                      str(w / "p.json")], "model.safetensors"),
    "predict-model-config-json": lambda s, w: _predict([str(png(w / "a.png")), "--model",
                                                        str(model_copy(s, w, "json")), "--out", str(w / "p.json")],
                                                       "config.json"),
    "predict-input-missing": lambda s, w: _predict([str(w / "gone.png"), "--model", str(s / "model"),
                                                    "--out", str(w / "p.json")], "gone.png"),
    "predict-empty-folder": lambda s, w: _predict([str((w / "imgs").mkdir() or w / "imgs"), "--model",
                                                   str(s / "model"), "--out", str(w / "p.json")], "imgs"),
    "predict-batch-size-0": lambda s, w: _predict([str(png(w / "a.png")), "--batch-size", "0", "--out",
                                                   str(w / "p.json")], "--batch-size"),
    "predict-no-gpu": lambda s, w: (_predict([str(png(w / "a.png")), "--model", str(s / "model"), "--device",
                                              "cuda:7", "--out", str(w / "p.json")], "cuda")
                                    if not torch.cuda.is_available() else pytest.skip("has a GPU")),
    "predict-bomb-strict": lambda s, w: (png_header(w / "bomb.png", 20000, 15000),
                                         _predict([str(w / "bomb.png"), "--strict", "--model", str(s / "model"),
                                                   "--out", str(w / "p.json")], "bomb.png"))[1],
    "predict-truncated-strict": lambda s, w: (Path(w / "t.png").write_bytes(png(w / "t0.png", (64, 64)).read_bytes()[:90]),
                                              _predict([str(w / "t.png"), "--strict", "--model", str(s / "model"),
                                                        "--out", str(w / "p.json")], "t.png"))[1],
    "predict-folder-one-bad": lambda s, w: ((w / "imgs").mkdir(), png(w / "imgs" / "a.png"),
                                            (w / "imgs" / "b.png").write_bytes(b"not a png"),
                                            _predict([str(w / "imgs"), "--model", str(s / "model"),
                                                      "--out", str(w / "p.json")], "b.png",
                                                     writes=("p.json",)))[-1],
    # build
    "build-program-missing": lambda s, w: (["build", str(w / "none.txt"), "--out", str(w / "s.blend")],
                                           "none.txt", ()),
    "build-program-not-utf8": lambda s, w: ((w / "p.txt").write_bytes(b"\xff\xfe\x00add"),
                                            ["build", str(w / "p.txt"), "--out", str(w / "s.blend")], "p.txt", ())[1:],
    "build-arabic-digits": lambda s, w: ((w / "p.txt").write_text(PROGRAM.replace("2.0", "\u0662.\u0660")),
                                         ["build", str(w / "p.txt"), "--out", str(w / "s.blend")], "p.txt", ())[1:],
    "build-huge-token": lambda s, w: ((w / "p.txt").write_text(PROGRAM.replace("'cube'", "'" + "x" * 2_000_000 + "'")),
                                      ["build", str(w / "p.txt"), "--out", str(w / "s.blend")], "p.txt", ())[1:],
    "build-unknown-shape": lambda s, w: ((w / "p.txt").write_text(PROGRAM.replace("cube", "blob")),
                                         ["build", str(w / "p.txt"), "--out", str(w / "s.blend")], "p.txt", ())[1:],
    "build-out-is-folder": lambda s, w: ((w / "p.txt").write_text(PROGRAM), (w / "s.blend").mkdir(),
                                         ["build", str(w / "p.txt"), "--out", str(w / "s.blend")], "s.blend", ())[2:],
    "build-out-is-input": lambda s, w: ((w / "p.blend").write_text(PROGRAM),
                                        ["build", str(w / "p.blend"), "--out", str(w / "p.blend")], "p.blend", ())[1:],
    "build-out-read-only": lambda s, w: ((w / "p.txt").write_text(PROGRAM),
                                         ["build", str(w / "p.txt"), "--out", str(Path("/sys") / "s.blend")],
                                         "/sys", ())[1:],
    "build-bad-size": lambda s, w: ((w / "p.txt").write_text(PROGRAM),
                                    ["build", str(w / "p.txt"), "--out", str(w / "s.blend"), "--size", "9x"],
                                    "--size", ())[1:],
    # generate (all refused before Blender renders anything)
    "generate-out-is-file": lambda s, w: (["generate", "--count", "2", "--out", str(png(w / "a.png"))], "a.png", ()),
    "generate-out-read-only": lambda s, w: (["generate", "--count", "2", "--out", str(READ_ONLY)], str(READ_ONLY), ()),
    "generate-not-empty": lambda s, w: ((w / "d").mkdir(), png(w / "d" / "x.png"),
                                        ["generate", "--count", "2", "--out", str(w / "d")], "d", ())[2:],
    "generate-other-settings": lambda s, w: (dataset_copy(s, w),
                                             ["generate", "--resume", "--count", "4", "--seed", "9", "--out",
                                              str(w / "data")], "data", ())[1:],
    "generate-corrupt-label": lambda s, w: (_generate_manifest(dataset_copy(s, w)), _corrupt_label(w / "data"),
                                            ["generate", *GENERATE_ARGS, "--out", str(w / "data")], "CLEVR_", ())[2:],
    "generate-corrupt-manifest": lambda s, w: (dataset_copy(s, w), (w / "data" / "manifest.json").write_text("{"),
                                               ["generate", "--resume", "--count", "4", "--out", str(w / "data")],
                                               "manifest.json", ())[2:],
    "generate-bad-count": lambda s, w: (["generate", "--count", "0", "--out", str(w / "d")], "--count", ()),
    # train
    "train-data-missing": lambda s, w: (["train", "--data", str(w / "nodata"), "--out", str(w / "run"), *TRAIN],
                                        "nodata", ()),
    "train-out-is-file": lambda s, w: (["train", "--data", str(s / "data"), "--out", str(png(w / "a.png")), *TRAIN],
                                       "a.png", ()),
    "train-out-is-data": lambda s, w: (dataset_copy(s, w),
                                       ["train", "--data", str(w / "data"), "--out", str(w / "data"), *TRAIN],
                                       "data", ())[1:],
    "train-out-read-only": lambda s, w: (["train", "--data", str(s / "data"), "--out", str(READ_ONLY), *TRAIN],
                                         str(READ_ONLY), ()),
    "train-bad-set": lambda s, w: (["train", "--data", str(s / "data"), "--out", str(w / "run"), *TRAIN,
                                    "--set", "lm_heads=5"], "lm_heads", ()),
    "train-init-from-nan": lambda s, w: (["train", "--data", str(s / "data"), "--out", str(w / "run"),
                                          "--init-from", str(model_copy(s, w, "nan")), "--threads", "1", "--quiet",
                                          "--workers", "0", "--steps", "2", "--batch-size", "2"],
                                         "model.safetensors", ()),
    "train-corrupt-label": lambda s, w: (dataset_copy(s, w), _corrupt_label(w / "data"),
                                         ["train", "--data", str(w / "data"), "--out", str(w / "run"), *TRAIN],
                                         "CLEVR_", ())[2:],
    "train-truncated-image": lambda s, w: (dataset_copy(s, w), _truncate_images(w / "data"),
                                           ["train", "--data", str(w / "data"), "--out", str(w / "run"), *TRAIN],
                                           ".png", ("run",))[2:],
    "train-resume-damaged": lambda s, w: (_damaged_run(w / "run"),
                                          ["train", "--data", str(s / "data"), "--out", str(w / "run"), "--resume",
                                           *TRAIN], "step_0000001", ())[1:],
    # evaluate
    "evaluate-truth-missing": lambda s, w: (["evaluate", "--truth", str(w / "t.json"), "--pred", str(w / "p.json")],
                                            "t.json", ()),
    "evaluate-pred-not-json": lambda s, w: ((w / "p.json").write_text("{oops"),
                                            ["evaluate", "--truth", str(s / "data"), "--pred", str(w / "p.json")],
                                            "p.json", ())[1:],
    "evaluate-pred-no-scenes": lambda s, w: ((w / "p.json").write_text('{"scenes": 3}'),
                                             ["evaluate", "--truth", str(s / "data"), "--pred", str(w / "p.json")],
                                             "p.json", ())[1:],
    "evaluate-out-is-pred": lambda s, w: ((w / "p.json").write_text('{"scenes": []}'),
                                          ["evaluate", "--truth", str(s / "data"), "--pred", str(w / "p.json"),
                                           "--out", str(w / "p.json")], "p.json", ())[1:],
    "evaluate-out-is-folder": lambda s, w: ((w / "p.json").write_text('{"scenes": []}'),
                                            ["evaluate", "--truth", str(s / "data"), "--pred", str(w / "p.json"),
                                             "--out", str(w)], str(w), ())[1:],
    "evaluate-missing-predictions": lambda s, w: ((w / "p.json").write_text('{"scenes": []}'),
                                                  ["evaluate", "--truth", str(s / "data"), "--pred",
                                                   str(w / "p.json")], "p.json", ())[1:],
    # package (refused before Blender's build tool runs)
    "package-out-is-file": lambda s, w: (["package", "--out", str(png(w / "a.png"))], "a.png", ()),
    "package-out-read-only": lambda s, w: (["package", "--out", str(READ_ONLY)], str(READ_ONLY), ()),
    "package-no-manifest": lambda s, w: ((w / "src").mkdir(),
                                         ["package", "--out", str(w / "dist"), "--source", str(w / "src")],
                                         "blender_manifest.toml", ())[1:],
    "package-bad-manifest": lambda s, w: ((w / "src").mkdir(), (w / "src" / "blender_manifest.toml").write_text("id = ["),
                                          ["package", "--out", str(w / "dist"), "--source", str(w / "src")],
                                          "blender_manifest.toml", ())[2:],
}


def _corrupt_label(data: Path) -> None:
    label = sorted((data / "labels").glob("*.json"))[1]
    label.write_text(label.read_text()[:25])


GENERATE_ARGS = ["--resume", "--count", "4", "--size", "48x32"]


def _generate_manifest(data: Path) -> Path:
    """The manifest `generate` writes for GENERATE_ARGS (the synthetic one has fewer keys)."""
    from ig_llm.training.data import generate
    settings = generate.settings_from_args(_generate_args(data))
    (data / "manifest.json").write_text(json.dumps({**settings, "generator": "ig_llm generate", "version": 1}))
    return data


def _truncate_images(data: Path) -> None:
    for p in (data / "images").glob("*.png"):
        p.write_bytes(p.read_bytes()[:100])


def _damaged_run(run: Path) -> None:
    ck = run / "checkpoints" / "step_0000001"
    ck.mkdir(parents=True)
    (ck / "state.pt").write_bytes(b"PK\x03\x04 this is not a torch file")
    (ck / "rng_rank0.pt").write_bytes(b"")


def tree(root: Path) -> dict:
    """Every file and folder under root: path -> bytes (None for folders)."""
    return {str(p.relative_to(root)): (None if p.is_dir() else p.read_bytes()) for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("case", sorted(CASES))
def test_fault(case, shared, tmp_path, capsys):
    w = tmp_path / "w"
    w.mkdir()
    argv, name, writes = CASES[case](shared, w)
    shared_before = tree(shared)
    before = tree(w)
    capsys.readouterr()
    code = cli_main(argv)                     # a bug would raise here, with its traceback
    stderr = capsys.readouterr().err.strip()
    assert code == 2, (code, stderr)
    assert "Traceback" not in stderr, stderr
    err = stderr.splitlines()[-1]             # before it, at most train's progress log lines
    assert [ln for ln in stderr.splitlines() if ln.startswith("ig_llm")] == [err], stderr
    assert err.startswith(f"ig_llm {argv[0]}: ") and len(err) < 600 and err.endswith("."), err
    assert name in err, (name, err)
    assert FIX_WORDS.search(err.split(": ", 1)[1]), f"no fix in: {err}"
    after = tree(w)
    assert not [p for p in after if TEMP_PREFIX in p or ".tmp" in p], after.keys()
    new = {p for p in set(after) - set(before) if not any(p == x or p.startswith(x + "/") for x in writes)}
    assert not new, f"{case} left {sorted(new)}"
    assert {p: after[p] for p in before} == before, "an input or earlier output changed"
    assert tree(shared) == shared_before


def test_the_table_is_big_enough():
    assert len(CASES) >= 40
    assert {c.split("-")[0] for c in CASES} >= {"predict", "build", "generate", "train", "evaluate", "package"}


def test_predict_folder_keeps_the_good_predictions(shared, tmp_path, capsys):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    png(imgs / "a.png"), png(imgs / "c.png")
    (imgs / "b.png").write_bytes(b"junk")
    png(imgs / f"{TEMP_PREFIX}a.png.render-1.png-x.png")   # a killed renderer's temp file: not in the set
    assert cli_main(["predict", str(imgs), "--model", str(shared / "model"), "--out", str(tmp_path / "p.json"),
                     "--quiet", "--device", "cpu"]) == 2
    out = json.loads((tmp_path / "p.json").read_text())
    assert [s["image_filename"] for s in out["scenes"]] == ["a.png", "c.png"]
    assert [f["image_filename"] for f in out["failed"]] == ["b.png"] and "b.png" in out["failed"][0]["error"]
    assert "1 of 3 image(s)" in capsys.readouterr().err


def test_parser_is_ascii_and_quotes_short_excerpts():
    from ig_llm.scene.program import ProgramError, parse
    with pytest.raises(ProgramError, match="unexpected character"):
        parse(PROGRAM.replace("2.0", "\u0662.0"))          # an Arabic-Indic digit is not a number
    with pytest.raises(ProgramError) as exc:
        parse(PROGRAM.replace("'cube'", "'" + "y" * 5_000_000 + "'"))
    assert len(str(exc.value)) < 300 and "5000000 characters" in str(exc.value)


def test_atomic_writes_keep_the_old_file_on_failure_and_usual_modes(tmp_path):
    from ig_llm import atomic
    out = tmp_path / "a.json"
    atomic.write_text(out, "old")
    with pytest.raises(ZeroDivisionError):
        with atomic.writing(out) as tmp:
            tmp.write_text("half")
            1 / 0
    with pytest.raises(KeyError):
        with atomic.writing_folder(tmp_path / "m") as tmp:
            (tmp / "x").write_text("half")
            raise KeyError("x")
    assert out.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.json"]
    assert out.stat().st_mode & 0o777 == 0o666 & ~atomic._UMASK


def test_one_loader_maps_every_mode(tmp_path):
    from ig_llm.images import load_image
    grey16 = Image.fromarray(np.full((8, 8), 32768, np.uint16))
    grey16.save(tmp_path / "g16.png")
    assert load_image(tmp_path / "g16.png").getpixel((0, 0)) == (128, 128, 128)   # not white
    for mode in ("1", "L", "I", "F", "P", "LA", "RGBA", "CMYK"):
        im = Image.new("RGB", (6, 4), (200, 100, 50)).convert(mode)
        out = load_image(im)
        assert out.mode == "RGB" and out.size == (6, 4), mode
    # EXIF orientation 6 (rotate 90): a 6x4 photo is shown 4x6
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (6, 4)).save(tmp_path / "r.jpg", exif=exif)
    assert load_image(tmp_path / "r.jpg").size == (4, 6)


def test_generate_accepts_what_a_failed_start_left(tmp_path):
    """A run that failed at start (disk full) leaves at most empty folders: a rerun accepts them."""
    from ig_llm.training.data import generate
    out = tmp_path / "d"
    (out / "images").mkdir(parents=True)
    settings = generate.settings_from_args(_generate_args(out))
    generate.prepare_out(out, settings, resume=False)
    assert json.loads((out / "manifest.json").read_text())["count"] == 4


def _generate_args(out: Path):
    import argparse

    from ig_llm.training.data import generate
    parser = argparse.ArgumentParser()
    generate.add_arguments(parser)
    return parser.parse_args([*GENERATE_ARGS, "--out", str(out)])


def test_damaged_latest_training_checkpoint_falls_back(shared, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--data", str(shared / "data"), "--out", str(run), *TRAIN, "--steps", "3", "--save-every", "1",
            "--keep", "2"]
    assert cli_main(args + ["--stop-at", "2"]) == 0
    (run / "checkpoints" / "step_0000002" / "state.pt").write_bytes(b"damaged")
    capsys.readouterr()
    assert cli_main(args + ["--resume"]) == 0
    err = capsys.readouterr().err
    assert "step_0000002 is damaged" in err and "step_0000001" in err
    assert (run / "model" / "config.json").is_file()


# -- the operator ------------------------------------------------------------------------------
OPERATOR_CASES = {
    "missing": (lambda s, w: (w / "none.png", s / "model"), "none.png"),
    "empty": (lambda s, w: ((w / "e.png").write_bytes(b""), w / "e.png", s / "model")[1:], "e.png"),
    "junk": (lambda s, w: ((w / "j.png").write_bytes(b"junk" * 40), w / "j.png", s / "model")[1:], "j.png"),
    "bomb": (lambda s, w: (png_header(w / "big.png", 20000, 15000), w / "big.png", s / "model")[1:], "big.png"),
    "model-missing": (lambda s, w: (png(w / "a.png"), w / "nomodel"), "nomodel"),
    "model-bad-heads": (lambda s, w: (png(w / "a.png"), model_copy(s, w, "heads")), "config.json"),
    "model-nan": (lambda s, w: (png(w / "a.png"), model_copy(s, w, "nan")), "model.safetensors"),
    "model-truncated": (lambda s, w: (png(w / "a.png"), model_copy(s, w, "truncated")), "model.safetensors"),
}


@pytest.fixture(scope="module")
def blender():
    bpy = pytest.importorskip("bpy")
    import ig_llm
    ig_llm.register()
    yield bpy
    ig_llm.unregister()


def scene_snapshot(bpy):
    d = bpy.data
    return {kind: sorted(x.name for x in getattr(d, kind))
            for kind in ("objects", "collections", "meshes", "materials", "texts", "images", "cameras", "lights",
                         "worlds")} | {"camera": bpy.context.scene.camera and bpy.context.scene.camera.name}


@pytest.mark.parametrize("case", sorted(OPERATOR_CASES))
def test_operator_fault(case, blender, shared, tmp_path):
    bpy = blender
    bpy.ops.wm.read_factory_settings(use_empty=True)
    w = tmp_path / "w"
    w.mkdir()
    setup, name = OPERATOR_CASES[case]
    image, model = setup(shared, w)
    before, files = scene_snapshot(bpy), tree(w)
    with pytest.raises(RuntimeError) as exc:        # Blender's form of an ERROR report
        bpy.ops.import_scene.image_to_scene(filepath=str(image), model_dir=str(model))
    msg = str(exc.value).strip()
    assert msg.startswith("Error: ") and "Traceback" not in msg and len(msg.splitlines()) == 1, msg
    assert name in msg and FIX_WORDS.search(msg) and "Image to Scene failed" not in msg, msg
    assert scene_snapshot(bpy) == before
    assert tree(w) == files
