"""Every CLI command in a plain Blender (issue #23, item 2).

The linux-x64 zip is installed into a Python that has only `bpy` (and the NumPy it brings):
no torch, Pillow, tqdm, SciPy or safetensors (the zip brings its safetensors wheel) — what
an artist's Blender has. Each command then runs in its own child process through the
callback the add-on registered with ``bpy.utils.register_cli_command`` — the entry that
``blender --background --command ig_llm …`` calls — and its return value is the exit code.

Each command either works (exit 0, its files written; demo, build, generate and predict run
for real on one tiny image) or refuses: exit 2, exactly one line on stderr that names what is
missing and how to get it, no traceback and nothing written.
"""
import json
import subprocess
from pathlib import Path

import pytest

from ig_llm import cli
from ig_llm.training import bench

pytest.importorskip("bpy")

# the child: `blender --background --command ig_llm ARGV…`, with the installed extension
CHILD = r"""
import os, sys, bpy, addon_utils
mode, rest = sys.argv[1], sys.argv[2:]
mod = "bl_ext.user_default.ig_llm"
if mode == "install":
    bpy.ops.extensions.package_install_files(filepath=rest[0], repo="user_default", enable_on_install=True)
    bpy.ops.wm.save_userpref()
    print("INSTALLED", mod in bpy.context.preferences.addons, flush=True)
    os._exit(0)
entries = {}
register = bpy.utils.register_cli_command
def spy(name, fn):
    entries[name] = fn
    return register(name, fn)
bpy.utils.register_cli_command = spy
if mod in bpy.context.preferences.addons:     # enabled at start-up, before the spy: again
    addon_utils.disable(mod)
addon_utils.enable(mod, default_set=True)
entry = entries["ig_llm"]
assert entry.__module__ == mod, entry.__module__
sys.stdout.flush()
sys.stderr.write("@@ENTRY@@\n")               # what the command writes comes after this line
sys.stderr.flush()
code = entry(rest)
sys.stdout.flush(); sys.stderr.flush()
os._exit(code if isinstance(code, int) else 99)  # Blender exits with what the command returned
"""

PROGRAM = "add(shape='cube', color='red', material='metal', size='large', loc=(+0.500, -1.000, +0.700), rotation=+0.200)\n"
RUNTIME = ("torch", "Install PyTorch Runtime", "pip install torch==")

# (case, argv, what must exist afterwards | None for a refusal, what the refusal must say)
CASES = [
    ("demo", ["demo", "--image", "{image}", "--out", "{out}/demo.blend", "--render", "{out}/render.png",
              "--compare", "{out}/compare.png", "--samples", "1"], ["demo.blend", "render.png", "compare.png"], ()),
    ("build", ["build", "{program}", "--out", "{out}/scene.blend"], ["scene.blend"], ()),
    ("generate", ["generate", "--count", "1", "--size", "32x24", "--samples", "1", "--workers", "1",
                  "--out", "{out}/data"], ["data/scenes.json", "data/images/CLEVR_trainA_000000.png"], ()),
    # the default --workers 2 needs the Blender application; the bpy module has none
    ("generate --workers 2", ["generate", "--count", "1", "--out", "{out}/data"], None, ("--workers 1",)),
    ("predict", ["predict", "{image}", "--out", "{out}/predictions.json"], ["predictions.json"], ()),
    ("evaluate", ["evaluate", "--truth", "{truth}", "--pred", "{truth}", "--out", "{out}/metrics.json"], None,
     ("scipy", "Install PyTorch Runtime", "pip install scipy==")),
    ("train", ["train", "--data", "{out}/data", "--out", "{out}/run"], None, RUNTIME),
    ("train-default", ["train-default", "--home", "{out}/home"], None, RUNTIME),
    ("train-recipe", ["train-recipe", "recipes/toy.toml", "--home", "{out}/home"], None, RUNTIME),
    ("experiment", ["experiment", "2d", "--out", "{out}/exp"], None, RUNTIME),
    ("bench render", ["bench", "render", "--images", "1"], None, ("make bench",)),
    ("bench model", ["bench", "model", "--images", "1"], None, ("make bench", "torch")),
    ("package", ["package", "--out", "{out}/dist"], None, ("make extension",)),
    ("home", ["home", "--home", "{out}/home"], [], ()),
]


@pytest.fixture(scope="module")
def plain_blender(python_without_torch, extension_dist, fresh_blender_env, tmp_path_factory):
    """run(argv, folder) -> (exit code, stdout, stderr written by the command): the linux-x64
    zip installed once into a fresh user folder of the bpy-only Python."""
    from ig_llm.tools import package

    home = tmp_path_factory.mktemp("plain_blender")
    env = fresh_blender_env(home)
    zip_path = extension_dist / "ig_llm-{}-linux_x64.zip".format(package.manifest()["version"])
    proc = subprocess.run([python_without_torch, "-c", CHILD, "install", str(zip_path)], capture_output=True,
                          text=True, env=env, timeout=300)
    assert "INSTALLED True" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]

    def run(argv, folder):
        proc = subprocess.run([python_without_torch, "-c", CHILD, "run", *argv], capture_output=True, text=True,
                              env=env, cwd=folder, timeout=600)
        assert "@@ENTRY@@" in proc.stderr, proc.stdout[-2000:] + proc.stderr[-2000:]
        return proc.returncode, proc.stdout, proc.stderr.split("@@ENTRY@@\n", 1)[1]
    return run


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A tiny image (the example scaled to 48x32), a program file and a CLEVR scenes JSON."""
    from PIL import Image

    from ig_llm.demo import EXAMPLE_IMAGE
    from ig_llm.scene.program import parse, scene_to_clevr

    folder = tmp_path_factory.mktemp("inputs")
    with Image.open(EXAMPLE_IMAGE) as im:
        im.convert("RGB").resize((48, 32)).save(folder / "tiny.png")
    (folder / "program.txt").write_text(PROGRAM)
    record = scene_to_clevr(parse(PROGRAM), image_filename="tiny.png", image_index=0)
    (folder / "truth.json").write_text(json.dumps({"scenes": [record]}))
    return {"image": str(folder / "tiny.png"), "program": str(folder / "program.txt"),
            "truth": str(folder / "truth.json")}


def test_the_cases_cover_every_command_and_bench_target():
    assert {argv[0] for _, argv, _, _ in CASES} == set(cli.COMMANDS)
    assert {argv[1] for _, argv, _, _ in CASES if argv[0] == "bench"} == set(bench.TARGETS)


def test_bpy_pin_in_the_sentences_matches_requirements_txt():
    from ig_llm.operators import deps

    assert deps.BPY_REQUIREMENT in (Path(cli.__file__).parent / "requirements.txt").read_text().splitlines()


@pytest.mark.parametrize("case, argv, made, says", CASES, ids=[c[0] for c in CASES])
def test_command_runs_or_refuses_in_one_sentence(plain_blender, inputs, tmp_path, case, argv, made, says):
    out = tmp_path / "out"
    out.mkdir()
    code, stdout, stderr = plain_blender([a.format(out=out, **inputs) for a in argv], tmp_path)
    shown = f"exit {code}\nstdout:\n{stdout[-3000:]}\nstderr:\n{stderr[-3000:]}"
    assert "Traceback" not in stdout + stderr, shown
    if made is not None:                                    # it works in a plain Blender
        assert code == 0, shown
        for rel in made:
            assert (out / rel).is_file() and (out / rel).stat().st_size > 0, rel
        if case == "predict":
            scenes = json.loads((out / "predictions.json").read_text())["scenes"]
            assert len(scenes) == 1 and scenes[0]["program"].startswith("add(")
        if case == "generate":
            assert len(json.loads((out / "data/scenes.json").read_text())["scenes"]) == 1
        return
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1 and not stdout.strip(), shown    # one sentence, exit 2, nothing else
    assert lines[0].startswith(f"ig_llm {argv[0]}: ") and lines[0].endswith("."), shown
    for words in says:                                      # what is missing and how to get it
        assert words in lines[0], shown
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["out"], "a refusal left files behind"
