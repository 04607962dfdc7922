"""Stage 1 of the conv tower: dense targets from a hand-made mask (and a dot, and a pose), the hue-rotation
augmentation, resume == uninterrupted, and condition B unreachable from training."""
import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ig_llm.cli import main as cli_main  # noqa: E402
from ig_llm.scene.domain import load_domain  # noqa: E402
from ig_llm.scene.program import Scene, SceneObject  # noqa: E402
from ig_llm.training.stages.tower import (RGB_TO_YIQ, cell_owners, centre_heatmap, colour_yiq,  # noqa: E402
                                          dense_targets, hue_matrix, object_rows, rotate_chroma)
from ig_llm.training.data.synthetic import make_synthetic_dataset  # noqa: E402

from test_train import RUN, TINY  # noqa: E402


def test_cell_owners_from_a_hand_made_mask():
    index = np.zeros((32, 48), dtype=np.uint8)      # a 4 x 6 grid of 8-px cells
    index[0:8, 0:8] = 1                             # object 1 fills cell (0, 0)
    index[8:16, 8:12] = 2                           # object 2: half of cell (1, 1) ...
    index[8:16, 12:16] = 3                          # ... object 3 the other half, one column more
    index[8:16, 16:17] = 3                          # 8 px of cell (1, 2): exactly the threshold
    index[24, 40:47] = 1                            # 7 px: too few for cell (3, 5)
    owner = cell_owners(index, 3)
    expected = np.zeros((4, 6), dtype=np.uint8)
    expected[0, 0], expected[1, 2] = 1, 3
    expected[1, 1] = 2                              # a tie goes to the lower object number
    assert owner.tolist() == expected.tolist()
    index[8:16, 8:9] = 3                            # now object 3 covers more of cell (1, 1)
    assert cell_owners(index, 3)[1, 1] == 3


def test_dot_targets_own_the_centre_cell_and_hold_the_canvas_position():
    from ig_llm.scene.task_program import DotObject
    domain = load_domain("2d")
    scene = Scene([DotObject(x=0.30, y=0.80)])
    owner, heat, rows = dense_targets({"objects": [{}]}, scene, None, (128, 128), domain, colour_yiq(domain), 1)
    # 0.30 * 128 = 38.4 px -> column 4; 0.80 * 128 = 102.4 px -> row 12 of the 16 x 16 grid
    assert owner.shape == (16, 16) and owner.sum() == 1 and owner[12, 4] == 1 and heat[12, 4] == 1.0
    assert rows[1, 6:8].tolist() == pytest.approx([-0.4, 0.6]) and not rows[1, :6].any()


def test_pose_targets_are_the_rotation_6d_read_from_the_pooled_grid():
    """so3: no cells, no heat; object 1's row holds the matrix's first two rows; the loss
    compares the grid's mean with them, and the probe turns that mean back into the matrix."""
    from ig_llm.model.presets import make_config
    from ig_llm.scene.rotations import as_tuple, euler_xyz_to_matrix, geodesic_deg
    from ig_llm.scene.task_program import PoseObject
    from ig_llm.training.stages.tower import build_dense_model, dense_loss, probe_scenes
    domain = load_domain("so3")
    m = euler_xyz_to_matrix((0.3, -1.1, 2.0))
    scene = Scene([PoseObject("tripod", as_tuple(m))])
    owner, heat, rows = dense_targets({"objects": [{}]}, scene, None, (128, 128), domain, colour_yiq(domain), 1)
    assert owner.shape == (16, 16) and not owner.any() and not heat.any()
    assert rows[1, :6].tolist() == pytest.approx(m[:2].ravel().tolist()) and not rows[1, 6:].any()
    config = make_config("tiny", domain="so3", max_objects=1, image_size=128, image_height=128)
    model = build_dense_model(config)
    assert model.heads.out_channels == 6
    # a head output that is the target everywhere but one cell, whose deviation the mean spreads
    out = {"rotation": torch.tensor(rows[1, :6]).view(1, 6, 1, 1).repeat(2, 1, 16, 16)}
    out["rotation"][1, :, 0, 0] += 256.0 * 0.1                  # mean moves by 0.1 on every channel
    batch = {"owner": torch.from_numpy(np.stack([owner, owner]).astype(np.int64)),
             "objects": torch.from_numpy(np.stack([rows, rows]))}
    loss, parts = dense_loss(out, batch)
    assert float(loss) == pytest.approx(0.01 / 2, rel=1e-4) and list(parts) == ["rotation"]
    decoded = probe_scenes(out, domain, {})
    assert geodesic_deg(decoded[0].objects[0].matrix, m) == pytest.approx(0.0, abs=1e-3)
    assert geodesic_deg(decoded[1].objects[0].matrix, m) > 1.0


def test_centre_heatmap_peaks_and_object_rows():
    heat = centre_heatmap([(4.0, 4.0), (45.0, 30.0)], (4, 6))
    assert heat[0, 0] == 1.0 and heat[3, 5] == 1.0 and (heat == 1.0).sum() == 2
    assert 0.0 < heat[0, 1] < 1.0 and heat[2, 2] < 0.05
    domain = load_domain("clevr")
    yiq = colour_yiq(domain)
    scene = Scene([SceneObject("cube", "red", "metal", "large", (1.5, -3.0, 0.7), math.pi / 8),
                   SceneObject("sphere", "gray", "rubber", "small", (0.0, 0.0, 0.35), 0.0)])
    rows = object_rows(scene, domain, yiq, max_objects=4)
    assert rows.shape == (5, 11) and not rows[0].any() and not rows[3:].any()
    assert rows[1, :3].tolist() == [domain.values("shape").index("cube"), domain.values("material").index("metal"),
                                    domain.values("size").index("large")]
    assert rows[1, 6:8].tolist() == pytest.approx([0.5, -1.0])
    assert rows[1, 8:11].tolist() == pytest.approx([0.0, 1.0, 1.0], abs=1e-6)   # cos, sin 4θ; a cube
    assert rows[2, 10] == 0.0 and abs(rows[2, 4]) < 1e-6 and abs(rows[2, 5]) < 1e-6   # grey: no chroma
    # a real record: the label's pixel centres land in the right cells at another size
    rec = {"width": 96, "height": 64, "objects": [{"pixel_coords": [10, 10, 5]}, {"pixel_coords": [90, 60, 5]}]}
    index = np.zeros((64, 96), dtype=np.uint8)
    index[0:20, 0:20], index[50:64, 80:96] = 1, 2
    owner, heat, _ = dense_targets(rec, scene, index, (48, 32), domain, yiq, 4)
    assert owner.shape == (4, 6) and owner[0, 0] == 1 and owner[3, 5] == 2
    assert heat[0, 0] == 1.0 and heat[3, 5] == 1.0


def test_hue_rotation_moves_pixels_and_colour_targets_together():
    rng = np.random.default_rng(0)
    for angle in rng.uniform(0, 2 * math.pi, 5):
        m = hue_matrix(angle)
        grey = np.array([0.4, 0.4, 0.4])
        assert m @ grey == pytest.approx(grey, abs=1e-9)          # grey stays grey
        rgb = rng.uniform(0.1, 0.9, 3)
        turned = RGB_TO_YIQ @ (m @ rgb)
        assert turned == pytest.approx(rotate_chroma(RGB_TO_YIQ @ rgb, angle), abs=1e-9)
    assert hue_matrix(2 * math.pi) == pytest.approx(np.eye(3), abs=1e-9)


def test_dense_stage1_resumed_equals_uninterrupted(tmp_path):
    torch.set_num_threads(1)
    data = make_synthetic_dataset(tmp_path / "data", 12, seed=5, width=96, height=64)
    args = ["--data", str(data), "--stage", "1", "--stage1-steps", "6", "--stage1-batch-size", "4",
            "--save-every", "2", *RUN, *TINY]
    assert cli_main(["train", "--out", str(tmp_path / "ref"), *args]) == 0
    assert cli_main(["train", "--out", str(tmp_path / "cut"), *args, "--stop-at", "3"]) == 0
    assert not (tmp_path / "cut" / "stage1" / "vision.safetensors").exists()
    assert cli_main(["train", "--out", str(tmp_path / "cut"), *args, "--resume"]) == 0
    a, b = ((tmp_path / r / "stage1" / "vision.safetensors").read_bytes() for r in ("ref", "cut"))
    assert a == b
    log = (tmp_path / "ref" / "train.log").read_text()
    assert "stage 1 (dense)" in log and "heat" in log and "shape" in log


def test_finer_grid_owns_small_slivers_and_trains_both_stages(tmp_path):
    """tower_stride=4: twice the grid, an object owns a cell at 1/8 of it (2 px), the heat
    peak sits in the finer cell; stage 1 and stage 2 run on it, and the LM still gets one
    token per 16x16 pixels."""
    from ig_llm.model.checkpoint import load_checkpoint
    domain = load_domain("clevr")
    scene = Scene([SceneObject("cube", "red", "metal", "large", (0.0, 0.0, 0.7), 0.0)])
    rec = {"width": 48, "height": 32, "objects": [{"pixel_coords": [13, 6, 5]}]}
    index = np.zeros((32, 48), dtype=np.uint8)
    index[4:6, 12:14] = 1                              # a 2x2-px sliver: 4 px
    coarse, _, _ = dense_targets(rec, scene, index, (48, 32), domain, colour_yiq(domain), 1)
    fine, heat, _ = dense_targets(rec, scene, index, (48, 32), domain, colour_yiq(domain), 1, stride=4)
    assert coarse.shape == (4, 6) and not coarse.any()          # 4 of 64 px: too few for an 8-px cell
    assert fine.shape == (8, 12) and fine.sum() == 1 and fine[1, 3] == 1
    assert heat[1, 3] == 1.0 and (heat == 1.0).sum() == 1
    data = make_synthetic_dataset(tmp_path / "data", 8, seed=5, width=96, height=64)
    common = ["--data", str(data), "--set", "tower_stride=4", *RUN, *TINY]
    assert cli_main(["train", "--out", str(tmp_path / "run"), "--stage", "both", "--stage1-steps", "2",
                     "--stage1-batch-size", "4", "--steps", "2", "--batch-size", "2", *common]) == 0
    model = load_checkpoint(tmp_path / "run" / "model")
    assert model.config.tower_stride == 4
    with torch.no_grad():
        x = torch.zeros(1, 3, 64, 96)
        assert model.vision.features(x).shape[-2:] == (16, 24)       # 4 px per cell
        assert model.vision(x).shape == (1, 24, 16 * 16)            # 96x64 / 16x16 px tokens, 4x4 cells of 16


def test_no_training_command_reads_condition_b(tmp_path, capsys):
    b = make_synthetic_dataset(tmp_path / "valB", 6, seed=2, condition="B", split="valB")
    a = make_synthetic_dataset(tmp_path / "trainA", 6, seed=1)
    for stage in (["--stage", "1"], ["--stage", "2"], ["--stage", "both"]):
        out = tmp_path / f"run{stage[1]}"
        rc = cli_main(["train", "--data", str(a), str(b), "--out", str(out), *stage, "--stage1-steps", "1",
                       "--steps", "1", *RUN, *TINY])
        assert rc == 2
        err = capsys.readouterr().err
        assert "condition-B" in err and "held out" in err and str(b) in err
        assert not (out / "model").exists() and not (out / "stage1" / "vision.safetensors").exists()
    # recipes reach condition B only as evaluation sets: tests/test_recipe.py


def test_packs_carry_the_per_pixel_truth(tmp_path):
    from ig_llm.training.data.dataset import DatasetError, open_source, pack
    data = make_synthetic_dataset(tmp_path / "data", 5, seed=4, width=96, height=64)
    pack([data], tmp_path / "p.npz")
    pack([data], tmp_path / "half.npz", size=(48, 32))
    folder, packed, half = (open_source(p) for p in (data, tmp_path / "p.npz", tmp_path / "half.npz"))
    for i in range(5):
        assert np.array_equal(folder.index_map(i), packed.index_map(i))
        assert half.index_map(i).shape == (32, 48)
        assert packed.record(i)["objects"][0]["pixel_coords"] == pytest.approx(
            folder.record(i)["objects"][0]["pixel_coords"], abs=1e-3)
    import shutil
    shutil.rmtree(data / "index")
    pack([data], tmp_path / "bare.npz")
    with pytest.raises(DatasetError, match="index_maps"):
        open_source(tmp_path / "bare.npz").index_map(0)
    with pytest.raises(DatasetError, match="index_maps"):
        open_source(data).index_map(0)


def test_learning_curve_runs_each_size_once_and_plots(tmp_path):
    from ig_llm.training.experiments import learning_curve
    train = make_synthetic_dataset(tmp_path / "trainA", 8, seed=6, width=96, height=64)
    val = make_synthetic_dataset(tmp_path / "valB", 4, seed=7, width=96, height=64, condition="B", split="valB")
    argv = ["--data", str(train), "--val", str(val), "--sizes", "4", "8", "--steps", "2", "--batch-size", "4",
            "--out", str(tmp_path / "curve"), "--figure", str(tmp_path / "curve.png"), "--threads", "1"]
    assert learning_curve.main([*argv, *TINY]) == 0         # TINY: --set overrides, passed to train
    table = (tmp_path / "curve" / "learning_curve.md").read_text()
    assert "| 4 | valB |" in table and "| 8 | valB |" in table
    assert (tmp_path / "curve.png").stat().st_size > 10_000
    runs = json.loads((tmp_path / "curve" / "learning_curve.json").read_text())
    assert set(runs) == {"4", "8"} and 0.0 <= runs["8"]["valB"]["count_acc"] <= 1.0
    assert json.loads((tmp_path / "curve" / "n00004" / "stage1" / "stage1.json").read_text())["images"] == 4
    # --probe scores one finished tower without training: the same numbers as the curve's
    probe = tmp_path / "curve" / "n00008"
    (probe / "probe.json").unlink()
    assert learning_curve.main(["--probe", str(probe / "stage1"), "--val", str(val), "--threads", "1", *TINY]) == 0
    again = json.loads((probe / "probe.json").read_text())
    assert again["valB"]["count_acc"] == runs["8"]["valB"]["count_acc"]
    assert learning_curve.main(["--probe", str(tmp_path / "nowhere"), "--val", str(val)]) == 2
