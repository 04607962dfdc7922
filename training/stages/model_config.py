"""The model config of a training run: the preset, the run's flags and its ``--set``
overrides, checked before anything is built. Both stages build their model from it
(stage 1 for its tower, stage 2 for the whole model), and the experiments read ``--set``
lists with :func:`parse_set`.
"""
from __future__ import annotations

import json
from pathlib import Path

from .runtime import TrainError


def build_config(args):
    """The IGLLM config for this run: preset + flags + --set overrides."""
    from ...model.presets import make_config
    overrides = parse_set(args.set)
    overrides.update(_flag_overrides(args))
    from ...model.checkpoint import check_config
    try:
        config = make_config(args.preset, **overrides)
        check_config(config)
    except (KeyError, TypeError, ValueError) as err:
        raise TrainError(f"Cannot build the model config ({err}); check --preset and --set.") from None
    return record_kit(config, overrides)


def record_kit(config, overrides: dict | None = None):
    """A model trained on an asset kit records it (name, vocabulary, sha256) and names it
    the way load_domain finds it again: by name when the kit folders have it, else by its
    folder; its object count limit follows the kit unless --set max_objects says otherwise.
    A missing or malformed kit is one sentence (KitError)."""
    from ...scene.domain import load_domain
    domain = load_domain(config.domain)
    if domain.kit is None:
        return config
    config.domain = domain.ref
    config.kit = domain.kit.record()
    if "max_objects" not in (overrides or {}):
        config.max_objects = domain.max_objects
    return config


def parse_set(items) -> dict:
    """--set KEY=VALUE items -> config overrides (JSON values; anything else is a string)."""
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise TrainError(f"--set {item} is not KEY=VALUE; write e.g. --set lm_layers=6.")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return overrides


def _flag_overrides(args) -> dict:
    o = {"numbers": args.numbers, "freeze_vision": not args.train_vision}
    if args.vision_weights:
        o["vision_weights"] = str(Path(args.vision_weights).resolve())
    return o
