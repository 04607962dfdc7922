"""Render one sample of the 2D or SO(3) task with Workbench and label it (bpy side).

The same contract as ``render.Renderer`` (``render_index``, ``label``, ``close``), so
``generate`` writes the same dataset layout (images/, labels/, scenes.json, manifest)
for every domain. One Blender scene lives per worker: the camera and render settings
are made once; each image rebuilds the one object and renders. There is no visibility
retry (the dot and the object are always in view) and no Object Index map (index/ stays
empty; only the CLEVR vision pre-training reads it). A 2D ``generic`` sample carries its own
look (disc colour and radius, background), applied after the build.
"""
from __future__ import annotations

import os
import tempfile

import bpy

from ...scene import builder
from ...scene.domain import Domain
from ...scene.program import format_program, scene_to_clevr
from ...scene.task_builder import add_task_camera, apply_dot_style, configure_task_render
from .render import close_renderer, strip_png_metadata
from .sampler import image_name
from .task_sampler import sample_task_image

OBJECTS_COLLECTION = "IG-LLM task objects"


class TaskRenderer:
    def __init__(self, width: int, height: int, samples: int, *, domain: Domain, condition: str,
                 seed: int = 0, split: str = "train", threads: int | None = None, quiet: bool = True, **_):
        self.width, self.height, self.samples = width, height, samples
        self.domain, self.condition, self.seed, self.split, self.quiet = domain, condition, seed, split, quiet
        self.scene = bpy.data.scenes.new("IG-LLM Task Dataset")
        self.tmpdir = tempfile.mkdtemp(prefix="ig_llm_task_render_")
        stage = bpy.data.collections.new("IG-LLM task stage")
        self.scene.collection.children.link(stage)
        self.scene.camera = add_task_camera(stage, domain)
        configure_task_render(self.scene, domain, width, height, samples, threads)
        self.collection = None

    def render_index(self, index: int, png_path: str, index_map_path: str | None = None) -> dict:
        """Render image `index` to `png_path`; returns its label."""
        from ...scene.stage import quiet_stdout, render_to
        sample = sample_task_image(self.seed, index, domain=self.domain, condition=self.condition,
                                   split=self.split)
        if self.collection is not None:
            builder.clear_scene_objects(self.collection)
        self.collection = builder.build_scene(sample.scene, collection_name=OBJECTS_COLLECTION,
                                              domain=self.domain, bpy_scene=self.scene)
        if self.domain.kind == "dot2d":
            apply_dot_style(self.collection, self.domain, sample.style, self.scene)
        head, name = os.path.split(png_path)
        tmp = os.path.join(head, f".{name}.render-{os.getpid()}.png")
        if self.quiet:
            with quiet_stdout():
                render_to(tmp, scene=self.scene)
        else:
            render_to(tmp, scene=self.scene)
        strip_png_metadata(tmp, png_path)
        return self.label(sample)

    def label(self, sample) -> dict:
        rec = scene_to_clevr(sample.scene, image_filename=image_name(self.split, sample.index),
                             image_index=sample.index, split=self.split)
        rec["program"] = format_program(sample.scene, "char", domain=self.domain)
        rec.update({"domain": self.domain.name, "condition": self.condition, "seed": self.seed,
                    "attempt": sample.attempt, "width": self.width, "height": self.height,
                    "samples": self.samples})
        if sample.style is not None:
            rec["style"] = sample.style
        return rec

    def close(self):
        close_renderer(self)
