"""Training pipeline on a tiny drawn dataset: pack, stage 1 + 2, predict, evaluate,
resume after SIGKILL (bit-identical weights), DDP with 2 CPU processes (gloo)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from ig_llm.cli import main as cli_main  # noqa: E402
from ig_llm.training.data.dataset import (DatasetError, LengthGroupedBatches, PackSource, SceneDataset,  # noqa: E402
                                          StepBatches, open_source, pack, stream_index)
from ig_llm.training.data.synthetic import make_synthetic_dataset  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# a very small model: the default conv tower at the drawings' own 96x64 (12x8 grid, 24 LM
# tokens) with narrow channels, and a 2-layer LM of width 64
TINY = ["--set", "image_size=96", "--set", "image_height=64", "--set", "conv_channels=[8,8,16,16,16]",
        "--set", "lm_hidden=64", "--set", "lm_layers=2", "--set", "lm_intermediate=128",
        "--set", "storage_dtype=float32"]
# the earlier ViT tower (preset tiny-vit, contrastive stage 1): 64 px, 16 patch tokens
TINY_VIT = ["--preset", "tiny-vit", "--set", "image_size=64", "--set", "vision_width=64",
            "--set", "vision_layers=2", "--set", "vision_heads=2", "--set", "lm_hidden=64",
            "--set", "lm_layers=2", "--set", "lm_intermediate=128", "--set", "storage_dtype=float32"]
RUN = ["--threads", "1", "--quiet", "--workers", "0", "--log-every", "5"]
COMMON = [*RUN, *TINY]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("data") / "train", 24, seed=3, width=96, height=64)


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return env


def _state(run: Path):
    """fp32 model tensors of the last training checkpoint of a run."""
    last = sorted((run / "checkpoints").glob("step_*"))[-1]
    return last.name, torch.load(last / "state.pt", weights_only=False)["model"]


def test_pack_and_step_batches(data, tmp_path):
    stats = pack([data], tmp_path / "train.npz")
    assert stats["images"] == 24 and stats["bytes"] < 24 * 20_000
    packed, folder = open_source(tmp_path / "train.npz"), open_source(data)
    assert isinstance(packed, PackSource) and len(packed) == len(folder) == 24
    for i in (0, 23):
        assert packed.image(i).size == folder.image(i).size == (96, 64)
        a, b = packed.scene(i).objects, folder.scene(i).objects
        assert [o.shape for o in a] == [o.shape for o in b]
        assert all(abs(x - y) < 1e-5 for oa, ob in zip(a, b) for x, y in zip(oa.loc, ob.loc))
    # the RAM cache gives exactly the floats of decoding + preprocessing each time
    plain, cached = SceneDataset(packed, 64), SceneDataset(packed, 64, cache=True)
    assert all(torch.equal(plain[i][1], cached[(0, i)][1]) for i in (0, 5, 23))
    with pytest.raises(DatasetError, match="must end in"):
        pack([data], tmp_path / "train.tar")
    with pytest.raises(DatasetError, match="does not exist"):
        open_source(tmp_path / "missing.npz")
    # data order: a pure function of (seed, step); two ranks split each global batch
    one = StepBatches(24, 4, seed=7, start=0, stop=12)
    r0, r1 = (StepBatches(24, 2, seed=7, start=5, stop=12, rank=r, world=2) for r in (0, 1))
    for step in range(5, 12):
        assert one.batch(step) == r0.batch(step) + r1.batch(step)
        assert [i for _, i in one.batch(step)] == [stream_index(step * 4 + k, 24, 7) for k in range(4)]
    epoch0 = sorted(i for s in range(6) for _, i in one.batch(s))
    assert epoch0 == list(range(24))   # every image once per epoch
    # length-grouped batches (stage 2): the same examples per group of steps, similar
    # lengths within a batch, ranks splitting each global batch, a pure function of the step
    lengths = [i % 7 for i in range(24)]
    grouped = LengthGroupedBatches(lengths, 4, seed=7, start=0, stop=12, group=3)
    for g in range(4):
        steps = range(3 * g, 3 * g + 3)
        assert sorted(i for s in steps for _, i in grouped.batch(s)) == sorted(i for s in steps for _, i in one.batch(s))
        spans = [max(lengths[i] for _, i in grouped.batch(s)) - min(lengths[i] for _, i in grouped.batch(s)) for s in steps]
        assert sum(spans) <= 6
    halves = [LengthGroupedBatches(lengths, 2, seed=7, start=0, stop=12, rank=r, world=2, group=3) for r in (0, 1)]
    assert all(grouped.batch(s) == halves[0].batch(s) + halves[1].batch(s) for s in range(12))
    assert LengthGroupedBatches(lengths, 4, seed=7, start=5, stop=12, group=3).batch(7) == grouped.batch(7)


@pytest.mark.parametrize("tower", [TINY, TINY_VIT], ids=["conv-dense", "vit-contrastive"])
def test_train_predict_evaluate_end_to_end(data, tmp_path, capsys, tower):
    torch.set_num_threads(1)
    run = tmp_path / "run"
    rc = cli_main(["train", "--data", str(data), "--out", str(run), "--stage", "both",
                   "--stage1-steps", "3", "--stage1-batch-size", "8", "--steps", "8", "--batch-size", "4",
                   "--save-every", "4", "--lr", "2e-3", *RUN, *tower])
    assert rc == 0
    assert (run / "stage1" / "vision.safetensors").is_file()
    for f in ("config.json", "model.safetensors", "tokenizer.json", "card.md"):
        assert (run / "model" / f).is_file()
    card = (run / "model" / "card.md").read_text()
    assert "24 images" in card and "steps: 8" in card
    log = (run / "train.log").read_text()
    assert "stage 1 step 3/3" in log and "step 8/8" in log and "eta" in log
    # the stage 1 tower is what the stage 2 model started from (frozen: still equal)
    from safetensors.torch import load_file
    stage1 = load_file(str(run / "stage1" / "vision.safetensors"))
    trained = load_file(str(run / "model" / "model.safetensors"))
    for key in stage1:      # every tensor, BatchNorm statistics included
        # the ViT lives at vision.visual.*, the conv tower at vision.*
        name = "vision." + key if "vision." + key in trained else "vision." + key[len("visual."):]
        assert torch.equal(stage1[key], trained[name].to(stage1[key].dtype)), key

    pred = tmp_path / "pred.json"
    assert cli_main(["predict", str(data / "images"), "--model", str(run / "model"), "--out", str(pred),
                     "--device", "cpu", "--batch-size", "8", "--quiet"]) == 0
    scenes = json.loads(pred.read_text())["scenes"]
    assert len(scenes) == 24 and scenes[0]["image_filename"] == "CLEVR_synthetic_000000.png"
    assert "program" in scenes[0]
    for o in (o for s in scenes for o in s["objects"]):
        assert set(o) >= {"shape", "size", "material", "color", "3d_coords", "rotation"}
    out = tmp_path / "metrics.json"
    assert cli_main(["evaluate", "--truth", str(data / "scenes.json"), "--pred", str(pred), "--out", str(out)]) == 0
    summary = json.loads(out.read_text())["summary"]
    assert summary["scenes"] == 24 and 0.0 <= summary["count_acc"] <= 1.0
    # the same through a packed dataset (what a GPU machine gets): predict + evaluate read the .npz
    pack([data], tmp_path / "val.npz", quality=95, limit=6)
    pred2, out2 = tmp_path / "pred2.json", tmp_path / "metrics2.json"
    assert cli_main(["predict", str(tmp_path / "val.npz"), "--model", str(run / "model"), "--out", str(pred2),
                     "--device", "cpu", "--quiet"]) == 0
    assert [s["image_filename"] for s in json.loads(pred2.read_text())["scenes"]] == \
        [s["image_filename"] for s in scenes[:6]]
    assert cli_main(["evaluate", "--truth", str(tmp_path / "val.npz"), "--pred", str(pred2), "--out", str(out2)]) == 0
    assert json.loads(out2.read_text())["summary"]["scenes"] == 6
    capsys.readouterr()

    # a second run into the same folder must not silently overwrite it
    assert cli_main(["train", "--data", str(data), "--out", str(run), "--steps", "8", *COMMON]) == 2
    assert "--resume" in capsys.readouterr().err
    assert cli_main(["train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "r2"), *COMMON]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_resume_after_sigkill_gives_identical_weights(data, tmp_path):
    torch.set_num_threads(1)
    args = ["--data", str(data), "--steps", "40", "--batch-size", "8", "--save-every", "4", *COMMON]
    # uninterrupted reference, in process
    assert cli_main(["train", "--out", str(tmp_path / "ref"), *args]) == 0
    # the same run in a subprocess, SIGKILLed as soon as its first checkpoint lands
    killed = tmp_path / "killed"
    # (the interrupted run uses the 8-bit RAM cache: it must not change a single weight either)
    proc = subprocess.Popen([sys.executable, "-m", "ig_llm", "train", "--out", str(killed), *args,
                             "--cache-images"],
                            cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not list((killed / "checkpoints").glob("step_*")):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert not (killed / "model").exists()                    # it really was cut short
    stopped_at = _state(killed)[0]
    assert cli_main(["train", "--out", str(killed), "--resume", *args, "--cache-images"]) == 0
    assert "resumed from" in (killed / "train.log").read_text()
    name_a, a = _state(tmp_path / "ref")
    name_b, b = _state(killed)
    assert name_a == name_b == "step_0000040" and stopped_at != name_b
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "ref" / "model" / "model.safetensors").read_bytes() == \
        (killed / "model" / "model.safetensors").read_bytes()


def test_ddp_two_cpu_processes(data, tmp_path):
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "ig_llm", "train", "--data", str(data), "--out", str(run), "--stage", "both",
           "--stage1-steps", "2", "--stage1-batch-size", "4", "--steps", "4", "--batch-size", "2",
           "--save-every", "2", *COMMON]
    res = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (run / "model" / "model.safetensors").is_file()
    last = run / "checkpoints" / "step_0000004"
    assert (last / "rng_rank0.pt").is_file() and (last / "rng_rank1.pt").is_file()
    assert "x 2 process(es)" in (run / "train.log").read_text()


def test_fine_tune_from_a_finished_model_with_mirror_augmentation(data, tmp_path, capsys):
    torch.set_num_threads(1)
    base = tmp_path / "base"
    assert cli_main(["train", "--data", str(data), "--out", str(base), "--steps", "4", "--batch-size", "4",
                     *COMMON]) == 0
    tuned = tmp_path / "tuned"
    common = [a for a in COMMON if a not in TINY]     # the config comes from the model folder
    assert cli_main(["train", "--data", str(data), "--out", str(tuned), "--init-from", str(base / "model"),
                     "--mirror", "0.5", "--steps", "4", "--batch-size", "4", *common]) == 0
    from safetensors.torch import load_file
    a, b = (load_file(str(r / "model" / "model.safetensors")) for r in (base, tuned))
    assert set(a) == set(b)
    assert all(torch.equal(a[k], b[k]) for k in a if k.startswith("vision."))      # tower stays frozen
    assert any(not torch.equal(a[k], b[k]) for k in a if k.startswith("lm."))     # the LM moved on
    assert json.loads((tuned / "model" / "config.json").read_text())["config"]["lm_hidden"] == 64
    card = (tuned / "model" / "card.md").read_text()
    assert "initialised from" in card and "mirror with probability 0.5" in card
    assert "random init" not in card and "the initial model" in card
    capsys.readouterr()
    # wrong uses end in one sentence naming the fix
    assert cli_main(["train", "--data", str(data), "--out", str(tmp_path / "x"), "--init-from",
                     str(tmp_path / "missing"), *common]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli_main(["train", "--data", str(data), "--out", str(tmp_path / "y"), "--init-from",
                     str(base / "model"), *COMMON]) == 2
    assert "drop" in capsys.readouterr().err
    assert cli_main(["train", "--data", str(data), "--out", str(tmp_path / "z"), "--mirror", "2", *COMMON]) == 2
    assert "probability" in capsys.readouterr().err


def test_resume_refuses_other_options_in_one_sentence(data, tmp_path, capsys):
    torch.set_num_threads(1)
    run = tmp_path / "run"
    args = ["--data", str(data), "--out", str(run), "--steps", "6", "--batch-size", "4", "--save-every", "2", *COMMON]
    assert cli_main(["train", *args, "--stop-at", "2"]) == 0
    meta = json.loads((run / "checkpoints" / "step_0000002" / "meta.json").read_text())
    assert meta["options"]["lr"] == 5e-4 and meta["options"]["batch_size"] == 4
    capsys.readouterr()
    # what is trained may not change ...
    for changed in (["--lr", "1e-3"], ["--mirror", "0.5"], ["--set", "lm_layers=3"]):
        assert cli_main(["train", *args, *changed, "--resume"]) == 2
        err = capsys.readouterr().err
        assert "was started with other options" in err and "--" + changed[0].lstrip("-") in err
        assert err.count("\n") == 1 and "Traceback" not in err
    assert not (run / "model").exists()
    # ... how it runs may (threads, logging, checkpoint cadence)
    assert cli_main(["train", *args[:-len(COMMON)], *TINY, "--threads", "1", "--quiet", "--workers", "0",
                     "--log-every", "3", "--save-every", "3", "--resume"]) == 0
    assert (run / "model" / "model.safetensors").is_file()


def test_feature_whitening_preserves_then_folds_into_the_projector(data):
    """Attaching whitening to a trained model changes nothing it computes; folding it back
    into the projector changes nothing either, and leaves a plain model."""
    from ig_llm.model.igllm import IGLLM
    from ig_llm.model.projector import FeatureWhitening, attach_whitening, fold_whitening
    from ig_llm.model.presets import make_config
    from ig_llm.model.tokenizer import ProgramTokenizer
    from ig_llm.training.stages.model_config import parse_set
    torch.manual_seed(0)
    config = make_config("tiny", **parse_set([TINY[i + 1] for i in range(0, len(TINY), 2)]))
    model = IGLLM(config, ProgramTokenizer.build(config.domain)).eval()
    keys = set(model.state_dict())
    px = torch.randn(3, 3, 64, 96)
    before = model.encode_images(px)
    # statistics of skewed tokens: the whitened tokens have identity covariance
    tokens = model.vision(torch.randn(16, 3, 64, 96)).flatten(0, 1) * torch.linspace(0.01, 3, model.vision.width)
    w = FeatureWhitening.fit(tokens)
    white = w(tokens)
    cov = torch.cov(white.T.double())
    big = torch.linalg.eigvalsh(cov)
    assert white.mean(0).abs().max() < 1e-3 and big.max() < 1.0 + 1e-3 and big[-10:].min() > 0.9
    attach_whitening(model, w, preserve=True)
    assert torch.allclose(model.encode_images(px), before, atol=1e-4)
    assert any(k.startswith("feature_whitening.") for k in model.state_dict())   # resumes carry it
    fold_whitening(model)
    assert model.feature_whitening is None and set(model.state_dict()) == keys
    assert torch.allclose(model.encode_images(px), before, atol=1e-4)


def test_whitened_stage2_resumes_and_saves_a_plain_model(data, tmp_path, capsys):
    torch.set_num_threads(1)
    run = tmp_path / "run"
    args = ["train", "--data", str(data), "--out", str(run), "--steps", "4", "--batch-size", "4",
            "--save-every", "2", "--whiten-features", *COMMON]
    assert cli_main([*args, "--stop-at", "2"]) == 0
    from safetensors.torch import load_file
    saved = torch.load(run / "checkpoints" / "step_0000002" / "state.pt", weights_only=False)["model"]
    mean = saved["feature_whitening.mean"]
    assert mean.abs().sum() > 0                      # fitted statistics, not the identity placeholder
    assert cli_main([*args, "--resume"]) == 0
    final = load_file(str(run / "model" / "model.safetensors"))
    assert not any("whitening" in k for k in final)
    from ig_llm.model.inference import Predictor
    for runtime in ("torch", "numpy"):               # the folded model loads in both runtimes
        Predictor(model_dir=run / "model", device="cpu", runtime=runtime)
    capsys.readouterr()
    assert cli_main(["train", "--data", str(data), "--out", str(tmp_path / "v"), "--whiten-features",
                     "--train-vision", *COMMON]) == 2
    assert "frozen tower" in capsys.readouterr().err


@pytest.mark.parametrize("stage, extra", [
    ("1", TINY),                # the dense conv tower
    ("1", TINY_VIT),            # the contrastive ViT tower
    ("2", TINY),                # the program stage
], ids=["dense", "contrastive", "program"])
def test_max_minutes_stops_every_stage_with_a_checkpoint_and_resume_finishes(data, tmp_path, stage, extra):
    """The one loop skeleton (training/stages/loop.py) ends each stage the same way."""
    run = tmp_path / "run"
    args = ["--data", str(data), "--out", str(run), "--stage", stage, "--stage1-steps", "6",
            "--stage1-batch-size", "4", "--steps", "6", "--batch-size", "4", "--save-every", "100", *RUN, *extra]
    assert cli_main(["train", *args, "--max-minutes", "0"]) == 0
    ckpts = run / ("stage1" if stage == "1" else "") / "checkpoints"
    assert [p.name for p in ckpts.glob("step_*")] == ["step_0000001"]       # stopped after one step, saved
    done = run / ("stage1/vision.safetensors" if stage == "1" else "model/config.json")
    assert not done.exists()
    assert cli_main(["train", *args, "--resume"]) == 0
    assert done.is_file() and (ckpts / "step_0000006").is_dir()


def test_time_budget_fixes_the_step_count_after_calibrating(data, tmp_path):
    run = tmp_path / "run"
    assert cli_main(["train", "--data", str(data), "--out", str(run), "--steps", "40", "--batch-size", "4",
                     "--time-budget", "0.02", *COMMON]) == 0
    log = (run / "train.log").read_text()
    assert "--time-budget 0.02 min:" in log and (run / "model" / "config.json").is_file()
