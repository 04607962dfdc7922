"""The `train` options are declared once (issue #22): the RunOptions dataclass generates the
command line, reads it back, and round-trips through a training checkpoint."""
import argparse
import json

import pytest

from ig_llm.training.stages import options as opts

ARGV = ["--data", "a", "b", "--out", "run", "--set", "lm_layers=2", "--set", "lm_hidden=64", "--stage", "both",
        "--steps", "5", "--lr", "0.001", "--hue-prob", "0", "--mirror", "0.5", "--whiten-features",
        "--threads", "1", "--limit", "7", "--numbers", "char", "--warmup-steps", "2", "--recolour", "0.25"]


def _parse(argv):
    parser = argparse.ArgumentParser()
    opts.add_arguments(parser)
    return parser.parse_args(argv)


def test_every_field_is_a_flag_and_every_flag_a_field():
    parser = argparse.ArgumentParser()
    opts.add_arguments(parser)
    flags = {a.dest for a in parser._actions if a.dest != "help"}
    assert flags == {f.name for f in opts._declared()}


def test_options_round_trip_through_argparse_and_json():
    options = opts.RunOptions.from_args(_parse(ARGV))
    assert options.data == ("a", "b") and options.set == ("lm_layers=2", "lm_hidden=64")
    assert (options.steps, options.lr, options.hue_prob, options.numbers) == (5, 0.001, 0.0, "char")
    again = opts.RunOptions.from_dict(json.loads(json.dumps(options.to_dict())))
    assert again == options
    defaults = opts.RunOptions.from_args(_parse(["--data", "d", "--out", "o"]))
    assert defaults.stage == "2" and defaults.batch_size == 32 and defaults.set == () and not defaults.resume


def test_the_scopes_say_what_changes_the_weights():
    assert set(opts.MODEL_SCOPE) == {"preset", "set", "numbers", "train_vision", "vision_weights", "init_from",
                                     "whiten_features"}
    assert {"data", "limit", "seed", "stage1_steps", "recolour", "hue_prob"} <= set(opts.STAGE1_SCOPE)
    assert {"steps", "lr", "mirror", "recolour", "seed"} <= set(opts.STAGE2_SCOPE)
    run_only = {"device", "workers", "threads", "save_every", "log_every", "keep", "stop_at", "max_minutes",
                "quiet", "cache_images", "bf16", "out", "resume"}
    assert not run_only & (set(opts.STAGE1_SCOPE) | set(opts.STAGE2_SCOPE))


def test_a_checkpoint_holds_its_run_options(tmp_path):
    """A real (tiny) stage-2 run: its checkpoint's meta.json reads back to the same options."""
    pytest.importorskip("torch")
    from ig_llm.cli import main as cli_main
    from ig_llm.training.data.synthetic import make_synthetic_dataset
    data = make_synthetic_dataset(tmp_path / "data", 6, seed=3, width=96, height=64)
    # no --out: the run goes to the data home's runs/<data folder>-stage<stage>
    argv = ["--data", str(data), "--home", str(tmp_path / "home"), "--steps", "2", "--batch-size", "2",
            "--save-every", "1", "--threads", "1", "--quiet", "--workers", "0",
            "--set", "image_size=96", "--set", "image_height=64", "--set", "conv_channels=[8,8,16,16,16]",
            "--set", "lm_hidden=64", "--set", "lm_layers=2", "--set", "lm_intermediate=128"]
    assert cli_main(["train", *argv]) == 0
    run = tmp_path / "home" / "runs" / "data-stage2"
    meta = json.loads(sorted((run / "checkpoints").glob("step_*"))[-1].joinpath("meta.json").read_text())
    saved = opts.RunOptions.from_dict(meta["options"])
    assert saved == opts.RunOptions.from_args(_parse([*argv, "--out", str(run)]))
    assert (run / "model" / "config.json").is_file()
