"""The shipped model's programs are what they were before this session's moves (the house,
the recipe, asset kits with CLEVR as the built-in kit, the 12 MP image path): 13 images,
the same words and numbers within float noise as commit f9dd706 wrote (tests/data)."""
import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("safetensors")

from model_helpers import assert_same_program  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def test_the_shipped_model_writes_the_programs_it_wrote_before(tmp_path):
    from ig_llm.model.inference import Predictor
    from ig_llm.training.data.synthetic import make_synthetic_dataset

    want = json.loads((ROOT / "tests" / "data" / "v9_programs.json").read_text())["programs"]
    images = make_synthetic_dataset(tmp_path / "imgs", 12, seed=7, width=192, height=128) / "images"
    shutil.copy(ROOT / "examples" / "clevr_example.png", images)
    paths = sorted(images.iterdir())
    assert sorted(p.name for p in paths) == sorted(want)
    for path, (_scene, program) in zip(paths, Predictor(runtime="numpy").predict([str(p) for p in paths])):
        assert_same_program(program, want[path.name])
