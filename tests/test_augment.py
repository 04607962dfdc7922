"""Mirror augmentation: a flipped image must show exactly the mirrored scene."""
import json
import math
import random

import numpy as np
import pytest

from ig_llm.scene.camera import StageJitter, project
from ig_llm.scene.domain import load_domain
from ig_llm.scene.program import format_program, parse
from ig_llm.training.data.augment import mirror_folder, mirror_point, mirror_scene, mirror_yaw
from ig_llm.training.data.sampler import sample_image
from ig_llm.training.data.synthetic import draw_scene, make_synthetic_dataset


def _cameras(n=20):
    rng = random.Random(4)
    return [StageJitter.sample(rng).camera_location() for _ in range(n)]


def test_mirrored_points_project_to_the_flipped_pixel():
    rng = random.Random(0)
    for cam in _cameras():
        for _ in range(10):
            p = (rng.uniform(-3, 3), rng.uniform(-3, 3), rng.uniform(0, 1))
            x, y, depth = project(p, cam, 480, 320)
            mx, my, mdepth = project(mirror_point(p, cam), cam, 480, 320)
            assert mx == pytest.approx(480 - x, abs=1e-9)
            assert (my, mdepth) == (pytest.approx(y, abs=1e-9), pytest.approx(depth, abs=1e-9))
            assert mirror_point(p, cam)[2] == pytest.approx(p[2])          # stays on the ground
            assert mirror_point(mirror_point(p, cam), cam) == pytest.approx(p)


def test_mirrored_yaw_is_the_reflected_direction():
    for cam in _cameras(5):
        for yaw in (0.0, 0.3, -1.2, 2.9):
            tip = (math.cos(yaw), math.sin(yaw), 0.0)
            m = mirror_yaw(yaw, cam)
            # the reflected heading vector (about the origin, which lies on the mirror plane)
            assert (math.cos(m), math.sin(m), 0.0) == pytest.approx(mirror_point(tip, cam), abs=1e-9)
            back = mirror_yaw(m, cam)
            assert math.cos(back - yaw) == pytest.approx(1.0)
        # a yaw is not simply negated: the mirror plane's direction depends on the camera
        assert mirror_yaw(0.0, cam) != pytest.approx(0.0, abs=1e-3)


def test_flipped_drawing_equals_drawing_of_the_mirrored_scene():
    # synthetic renderer: objects drawn where the camera projects them
    for i in range(6):
        s = sample_image(11, i, condition="A", split="t", max_objects=6, min_objects=3)
        cam = s.jitter.camera_location()
        flipped = np.asarray(draw_scene(s.scene, cam, 96, 64))[:, ::-1].astype(int)
        mirrored = np.asarray(draw_scene(mirror_scene(s.scene, cam), cam, 96, 64)).astype(int)
        # equal up to pixel-edge rounding of the drawn shapes
        assert (np.abs(flipped - mirrored).max(axis=2) > 8).mean() < 0.01   # a wrong mirror: > 0.1


def test_mirror_changes_the_program_but_keeps_the_vocabulary():
    s = sample_image(2, 0, condition="A", split="t", max_objects=5, min_objects=5)
    cam = s.jitter.camera_location()
    m = mirror_scene(s.scene, cam)
    assert sorted((o.shape, o.color, o.material, o.size) for o in m.objects) == \
        sorted((o.shape, o.color, o.material, o.size) for o in s.scene.objects)
    text = format_program(m, "char", camera=cam)
    assert text != format_program(s.scene, "char", camera=cam)
    parsed = parse(text, domain=load_domain())
    assert len(parsed.objects) == 5


def test_collator_mirrors_deterministically(tmp_path):
    torch = pytest.importorskip("torch")
    from ig_llm.model.presets import make_config
    from ig_llm.model.tokenizer import ProgramTokenizer
    from ig_llm.training.data.dataset import SceneDataset, open_source
    from ig_llm.training.stages.train import Collator

    data = make_synthetic_dataset(tmp_path / "d", 4, seed=1)
    config = make_config("tiny", image_size=64, image_height=64)   # square, as the dataset below
    tok = ProgramTokenizer.build(config.domain)
    ds = SceneDataset(open_source(data), 64)
    items = [ds[(3, i)] for i in range(4)]
    plain = Collator(tok, config, seed=0, rank=0)(items)
    always = Collator(tok, config, seed=0, rank=0, mirror=1.0)(items)
    assert torch.equal(always["pixel_values"], plain["pixel_values"].flip(-1))
    assert not torch.equal(always["num_values"], plain["num_values"])
    again = Collator(tok, config, seed=0, rank=0, mirror=0.5)(items)
    assert all(torch.equal(again[k], Collator(tok, config, seed=0, rank=0, mirror=0.5)(items)[k])
               for k in again if isinstance(again[k], torch.Tensor))


def test_mirror_folder_writes_flipped_images_and_mirrored_truth(tmp_path):
    from PIL import Image
    data = make_synthetic_dataset(tmp_path / "d", 3, seed=5)
    assert mirror_folder(data, tmp_path / "m") == 3
    src = json.loads((data / "scenes.json").read_text())["scenes"]
    dst = json.loads((tmp_path / "m" / "scenes.json").read_text())["scenes"]
    for a, b in zip(src, dst):
        cam = a["camera_location"]
        for oa, ob in zip(a["objects"], b["objects"]):
            assert ob["3d_coords"] == pytest.approx(list(mirror_point(oa["3d_coords"], cam)))
        img_a = np.asarray(Image.open(data / "images" / a["image_filename"]))
        img_b = np.asarray(Image.open(tmp_path / "m" / "images" / b["image_filename"]))
        assert np.array_equal(img_a[:, ::-1], img_b)
    with pytest.raises(FileNotFoundError, match="scenes.json"):
        mirror_folder(tmp_path / "nothing", tmp_path / "x")


def test_mirror_folder_bad_input_leaves_nothing(tmp_path):
    data = make_synthetic_dataset(tmp_path / "d", 2, seed=5)
    (data / "images" / "CLEVR_synthetic_000001.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot be read"):
        mirror_folder(data, tmp_path / "m")
    assert not any(p.name.startswith((".m", "m")) for p in tmp_path.iterdir())   # no half-written copy
    (data / "scenes.json").write_text("{broken")
    with pytest.raises(ValueError, match="not a readable scenes file"):
        mirror_folder(data, tmp_path / "m")
    with pytest.raises(FileExistsError, match="already exists"):
        mirror_folder(data, data)


def test_2d_dot_mirror_is_x_to_one_minus_x_on_the_flipped_canvas():
    """The 2d canvas is the whole square image: a flipped render shows the dot at 1 - x."""
    import numpy as np
    from ig_llm.scene.program import Scene
    from ig_llm.scene.task_program import DotObject
    side, x, y = 336, 0.23, 0.61
    img = np.zeros((side, side))
    vv, uu = np.mgrid[0:side, 0:side] + 0.5
    img[(uu - x * side) ** 2 + (vv - y * side) ** 2 <= 25] = 1          # the 5-px dot
    def centre(im):                 # the dot's position as the evaluator reads it
        ys, xs = np.nonzero(im)
        return (xs.mean() + 0.5) / side, (ys.mean() + 0.5) / side
    (cx, cy), (fx, fy) = centre(img), centre(img[:, ::-1])
    (dot,) = mirror_scene(Scene([DotObject(cx, cy)]), None).objects
    assert (dot.x, dot.y) == pytest.approx((fx, fy), abs=1e-12)


def test_mirror_refuses_a_pose_domain_in_one_sentence():
    from ig_llm.scene.domain import load_domain
    from ig_llm.training.data.augment import check_mirror
    check_mirror(load_domain("2d"))
    check_mirror(load_domain("clevr"))
    with pytest.raises(ValueError, match=r"^--mirror is not implemented for the so3:6d domain .*; drop --mirror\.$"):
        check_mirror(load_domain("so3:6d"))
