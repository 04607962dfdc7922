"""An NS-VQA-style baseline for CoGenT: a per-object parser, no language model.

NS-VQA (Yi et al., 2018) parses a CLEVR image object by object: Mask R-CNN finds the
objects, a second CNN reads each one's attributes and 3D position. The IG-LLM paper
compares against it on CoGenT. Here one convolutional network does both jobs per
object, CenterNet-style: the dense stage-1 network (training/stages/tower.py) finds
each object as a peak of its centre heat-map and reads shape, colour, material, size,
ground position and cube yaw from the heads at that cell (``probe_scenes``). It is
trained on the same condition-A renders and index masks as the IG-LLM tower, sees only
the image at test time, and writes the same predictions JSON as ``ig_llm predict``, so
the same evaluator scores both.

Deviation from NS-VQA, on purpose: one single-stage detector + attribute network instead
of a two-stage Mask R-CNN + crop classifier (no Mask R-CNN weights exist offline here).
"""
from __future__ import annotations

from pathlib import Path

from ...atomic import write_json

PREDICT_BATCH = 64      # images per forward pass; the network is small


def predict_baseline(stage1_dir, dataset_dir, out, preset: str = "tiny", sets=()) -> dict:
    """Decode every image of `dataset_dir` with the dense network of `stage1_dir` (trained with
    `preset` and ``--set`` overrides `sets`) and write ``{"model": …, "scenes": [CLEVR scene
    records]}`` to `out`; returns that report."""
    import torch

    from ...model.batching import preprocess_image
    from ...model.presets import make_config
    from ...scene.domain import load_domain
    from ...scene.program import scene_to_clevr
    from ..data.dataset import open_source
    from ..stages.tower import colour_yiq, load_dense_model, probe_scenes
    from ..stages.model_config import parse_set

    config = make_config(preset, **parse_set(sets))
    model = load_dense_model(stage1_dir, config)
    domain = load_domain(config.domain)
    yiq = colour_yiq(domain)
    source = open_source(dataset_dir)
    records = []
    with torch.no_grad():
        for start in range(0, len(source), PREDICT_BATCH):
            idx = range(start, min(len(source), start + PREDICT_BATCH))
            pixels = torch.stack([preprocess_image(source.image(i), config.image_dims) for i in idx])
            for i, scene in zip(idx, probe_scenes(model(pixels), domain, yiq)):
                records.append(scene_to_clevr(scene, image_filename=source.record(i)["image_filename"],
                                              image_index=len(records)))
    report = {"model": f"NS-VQA-style baseline ({stage1_dir})", "scenes": records}
    write_json(Path(out), report)
    return report


__all__ = ["predict_baseline"]
