"""Render one dataset sample with Cycles and label it (bpy side of the generator).

One :class:`Renderer` lives for a whole worker process: the stage (camera, lamps,
ground), the render settings and the materials are set up once, and each image only
moves the camera/lamps, rebuilds the few objects and renders. The visibility check
reads the Object Index pass of the *same* render (written by a compositor File Output
node to a small EXR): an object with fewer than `min_pixels` pixels makes the sample
resample its placement (next attempt) and render again, as CLEVR does.
"""
from __future__ import annotations

import os
import random
import tempfile
from contextlib import contextmanager

import bpy
import numpy as np

from ...atomic import write_bytes, writing
from ...scene import builder, stage
from ...scene.camera import ground_directions, project
from ...scene.domain import Domain, load_domain
from ...scene.program import format_program, scene_to_clevr
from .sampler import default_min_pixels, image_name, sample_image  # noqa: F401 (re-export)

OBJECTS_COLLECTION = "CLEVR_objects"
RELATION_EPS = 0.2                  # CLEVR's threshold for left/right/front/behind


class VisibilityError(RuntimeError):
    """No attempt produced a scene whose objects are all visible enough."""




def _index_pass_output(scene, directory: str) -> str:
    """Route the Object Index pass to `directory`/index0001.exr through the compositor;
    returns that path. The image itself still goes through the Composite node.
    Call after the render engine is set to Cycles (the pass list depends on it)."""
    scene.view_layers[0].use_pass_object_index = True
    scene.use_nodes = True
    tree = scene.node_tree
    rl = next((n for n in tree.nodes if n.bl_idname == "CompositorNodeRLayers"), None)
    if rl is None:
        rl = tree.nodes.new("CompositorNodeRLayers")
    # a new scene's node shows the *active* scene's passes until pointed at its own
    rl.scene, rl.layer = scene, scene.view_layers[0].name
    comp = next((n for n in tree.nodes if n.bl_idname == "CompositorNodeComposite"), None)
    if comp is None:
        comp = tree.nodes.new("CompositorNodeComposite")
    if not comp.inputs["Image"].is_linked:
        tree.links.new(rl.outputs["Image"], comp.inputs["Image"])
    out = next((n for n in tree.nodes if n.name == "IG_LLM_index"), None)
    if out is None:
        out = tree.nodes.new("CompositorNodeOutputFile")
        out.name = "IG_LLM_index"
    out.base_path = directory
    out.format.file_format = "OPEN_EXR"
    out.format.color_depth = "32"
    out.format.exr_codec = "NONE"
    out.format.color_mode = "BW"
    out.file_slots[0].path = "index"
    tree.links.new(rl.outputs["IndexOB"], out.inputs[0])
    return os.path.join(directory, f"index{scene.frame_current:04d}.exr")


def _no_metadata(scene) -> None:
    """No date/time/render-time text in the PNGs, so the same sample gives the same bytes."""
    r = scene.render
    r.use_stamp = False
    for name in dir(r):
        if name.startswith("use_stamp_"):
            try:
                setattr(r, name, False)
            except (AttributeError, TypeError):
                pass


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_META_CHUNKS = {b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"tIME", b"pHYs"}


def strip_png_metadata(path: str, dest: str | None = None) -> None:
    """Copy a PNG without its text/time chunks to `dest` (default: in place), atomically,
    and remove `path` if it differs. Cycles stamps render times into every PNG it writes
    (whatever the stamp settings), which would make equal images differ."""
    dest = dest or path
    data = open(path, "rb").read()
    if not data.startswith(_PNG_SIGNATURE):
        raise ValueError(f"{path} is not a PNG file")
    out, pos = [_PNG_SIGNATURE], len(_PNG_SIGNATURE)
    while pos < len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        end = pos + 12 + length                    # length, type, data, CRC
        if data[pos + 4:pos + 8] not in _PNG_META_CHUNKS:
            out.append(data[pos:end])
        pos = end
    write_bytes(dest, b"".join(out))
    if dest != path:
        os.remove(path)


def read_index_pass(path: str) -> np.ndarray:
    """Object Index EXR -> int array (height, width), row 0 at the image's TOP."""
    img = bpy.data.images.load(path, check_existing=False)
    try:
        w, h = img.size
        buf = np.empty(w * h * img.channels, dtype=np.float32)
        img.pixels.foreach_get(buf)
    finally:
        bpy.data.images.remove(img)
    index = buf.reshape(h, w, -1)[..., 0]
    return np.rint(index[::-1]).astype(np.int32)   # Blender's rows start at the bottom


def save_index_map(ids: np.ndarray, path: str) -> None:
    """Write an Object Index pass as the dataset's per-pixel truth, atomically.

    ``DIR/index/<image name>.npz`` holds one uint8 array ``index`` (height, width), row 0
    at the image's top: 0 = background, k = the k-th object of the label (1-based)."""
    with writing(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, index=ids.clip(0, 255).astype(np.uint8))


def relationships(objects: list, directions: dict) -> dict:
    """CLEVR's spatial relations: for each object, the indices of objects in each direction."""
    rel = {}
    for name in ("left", "right", "front", "behind"):
        d = directions[name]
        rel[name] = []
        for i, a in enumerate(objects):
            rel[name].append([j for j, b in enumerate(objects) if j != i and
                              sum((bc - ac) * dc for ac, bc, dc in zip(a.loc, b.loc, d)) > RELATION_EPS])
    return rel


class Renderer:
    """Keeps one Blender scene set up and renders dataset samples into it.

    `max_bounces` 4 (CLEVR: 12) keeps metal's reflections of the floor and of its
    neighbours, which is what tells metal from rubber, at a fraction of the cost."""

    def __init__(self, width: int, height: int, samples: int, *, domain: Domain | None = None,
                 condition: str = "A", seed: int = 0, split: str = "train", threads: int | None = None,
                 min_pixels: int | None = None, max_attempts: int = 100, denoise: bool = False,
                 max_bounces: int = 4, adaptive: bool = True, quiet: bool = True):
        self.width, self.height, self.samples = width, height, samples
        self.domain = domain or load_domain()
        self.condition, self.seed, self.split = condition, seed, split
        rule = self.domain.kit.rules.min_pixels if self.domain.kit is not None else 200
        self.min_pixels = default_min_pixels(width, height, rule) if min_pixels is None else min_pixels
        self.max_attempts, self.quiet = max_attempts, quiet
        # a scene of its own: nothing the user (or Blender's startup file) left in the
        # active scene shows up in the dataset
        self.scene = bpy.data.scenes.new("IG-LLM Dataset")
        self.tmpdir = tempfile.mkdtemp(prefix="ig_llm_render_")
        stage.setup_stage(None, scene=self.scene)
        if self.domain.kit is not None:           # an asset kit's floor colour (CLEVR's grey by default)
            stage.set_floor_colour(None, self.domain.kit.stage.floor)
        stage.configure_render(width, height, samples, denoise=denoise, threads=threads,
                               max_bounces=max_bounces, scene=self.scene)
        # adaptive=False reproduces the original generator (Blender 2.78 had no adaptive sampling)
        self.scene.cycles.use_adaptive_sampling = adaptive
        # CLEVR has only 3 area lamps + a sun: the light tree costs more than it saves
        # (measured: ~1/3 less CPU per image at 192x128 without it)
        self.scene.cycles.use_light_tree = False
        self.index_path = _index_pass_output(self.scene, self.tmpdir)
        _no_metadata(self.scene)
        self.collection = None

    # -- one render ---------------------------------------------------------------------
    def _render(self, sample, png_path: str) -> np.ndarray:
        """Stage + objects of `sample`, render to `png_path`; returns the index pass."""
        stage.setup_stage(sample.jitter, scene=self.scene)
        if self.collection is not None:
            builder.clear_scene_objects(self.collection)
        self.collection = builder.build_scene(sample.scene, collection_name=OBJECTS_COLLECTION,
                                              domain=self.domain, bpy_scene=self.scene,
                                              linked_meshes=True)
        # a fixed Cycles seed per image makes the PNG bytes reproducible
        self.scene.cycles.seed = random.Random(f"{self.split}:{self.seed}:{sample.index}:cycles").randrange(2 ** 31)
        if os.path.exists(self.index_path):
            os.remove(self.index_path)
        # render to a hidden temp file next to the target, then strip and move it in
        head, name = os.path.split(png_path)
        tmp = os.path.join(head, f".{name}.render-{os.getpid()}.png")
        with (stage.quiet_stdout() if self.quiet else _null()):
            stage.render_to(tmp, scene=self.scene)
        strip_png_metadata(tmp, png_path)
        return read_index_pass(self.index_path)

    def render_index(self, index: int, png_path: str, index_map_path: str | None = None) -> dict:
        """Render image `index` (resampling until every object is visible enough) to
        `png_path` (and its Object Index map to `index_map_path`, see `save_index_map`);
        returns its label (CLEVR scene record + program, jitter, ...)."""
        for attempt in range(self.max_attempts):
            sample = sample_image(self.seed, index, attempt, domain=self.domain,
                                  condition=self.condition, split=self.split)
            ids = self._render(sample, png_path)
            counts = np.bincount(ids.ravel().clip(0), minlength=len(sample.scene) + 1)
            visible = [int(c) for c in counts[1:len(sample.scene) + 1]]
            if min(visible) >= self.min_pixels:
                if index_map_path:
                    save_index_map(ids, index_map_path)
                return self.label(sample, visible)
        raise VisibilityError(f"Image {index}: no placement in {self.max_attempts} attempts had every "
                              f"object at >= {self.min_pixels} visible pixels; lower --min-pixels.")

    def index_only(self, record: dict, index_map_path: str) -> None:
        """Re-render the Object Index map of an existing sample (its label says which seed,
        index and attempt made it; the scene is a pure function of those). Run with
        samples=1: the index pass needs no light transport, so this costs a fraction of
        the original render. The throw-away image goes to the renderer's temp folder."""
        sample = sample_image(record["seed"], record["image_index"], record.get("attempt", 0), domain=self.domain,
                              condition=record["condition"], split=record["split"])
        ids = self._render(sample, os.path.join(self.tmpdir, "index_only.png"))
        save_index_map(ids, index_map_path)

    def label(self, sample, visible: list[int]) -> dict:
        camera = sample.jitter.camera_location()
        pixel_coords = [list(project(o.loc, camera, self.width, self.height)) for o in sample.scene.objects]
        rec = scene_to_clevr(sample.scene, image_filename=image_name(self.split, sample.index),
                             image_index=sample.index, split=self.split, pixel_coords=pixel_coords)
        directions = ground_directions(camera)
        for obj, n in zip(rec["objects"], visible):
            obj["visible_pixels"] = n
        rec["directions"] = {k: list(v) for k, v in directions.items()}
        rec["relationships"] = relationships(sample.scene.objects, directions)
        rec["program"] = format_program(sample.scene, "char", domain=self.domain, camera=camera)
        if self.domain.kit is not None:     # scene_from_clevr reads the record in the kit's words
            rec["domain"] = self.domain.ref
        rec.update({"jitter": sample.jitter.as_dict(), "camera_location": list(camera),
                    "condition": self.condition, "seed": self.seed, "attempt": sample.attempt,
                    "width": self.width, "height": self.height, "samples": self.samples})
        return rec

    def close(self):
        close_renderer(self)


def close_renderer(renderer) -> None:
    """Remove a renderer's temp folder, its objects and its dataset scene (every renderer
    keeps ``tmpdir``, ``collection`` and ``scene``)."""
    import shutil
    shutil.rmtree(renderer.tmpdir, ignore_errors=True)
    if renderer.collection is not None:
        builder.clear_scene_objects(renderer.collection)
        renderer.collection = None
    if renderer.scene.name in bpy.data.scenes and len(bpy.data.scenes) > 1:
        bpy.data.scenes.remove(renderer.scene)


@contextmanager
def _null():
    yield

