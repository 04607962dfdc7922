"""Label-exact mirror augmentation: a horizontally flipped render *is* a render of the
mirrored scene, so flipping the image and mirroring the program gives a new, correct
training pair at no rendering cost.

Why it is exact: the camera tracks the origin with world +Z up, so its right vector ``r``
is horizontal and the vertical plane through the camera and the origin (normal ``r``)
contains the camera's centre, forward and up axes. Reflecting the world in that plane
leaves the camera where it is and negates every point's horizontal image coordinate
about the principal point (the image centre): the image flips left-right. Objects stay
on the ground (``r`` has no z), CLEVR's shapes are mirror-symmetric, and a yaw ``θ``
becomes ``2φ − θ`` (``φ`` the plane's direction). Only the lamps, which the generator
jitters anyway, end up on the other side.

Pure Python for the geometry (no bpy); the pixel flip works on any [.., H, W] tensor.
"""
from __future__ import annotations

import math
from dataclasses import replace

from ...scene.camera import camera_axes
from ...scene.program import Scene
from ...scene.task_program import DotObject


def _reflect(v, r) -> tuple[float, float, float]:
    """`v` reflected in the plane through the origin with unit normal `r`."""
    d = sum(a * b for a, b in zip(v, r))
    return tuple(float(a - 2.0 * d * b) for a, b in zip(v, r))


def _yaw_reflected(yaw: float, r) -> float:
    x, y, _ = _reflect((math.cos(yaw), math.sin(yaw), 0.0), r)
    return math.atan2(y, x)


def mirror_point(point, camera) -> tuple[float, float, float]:
    """`point` reflected in the vertical plane through `camera` and the origin (its normal is
    the camera's horizontal right axis)."""
    return _reflect(point, camera_axes(camera)[0])


def mirror_yaw(yaw: float, camera) -> float:
    """The yaw of a mirrored object (radians, unfolded; the formatter folds it)."""
    return _yaw_reflected(yaw, camera_axes(camera)[0])


def check_mirror(domain) -> None:
    """Raise ValueError (one sentence) for a domain whose mirror image no program describes."""
    if domain.kind == "pose":
        raise ValueError(f"--mirror is not implemented for the {domain.name} domain (the mirror image of a chiral "
                         "object is no rotation of it); drop --mirror.")


def mirror_scene(scene: Scene, camera) -> Scene:
    """The scene a left-right flipped image of `scene` (seen from `camera`) shows.

    2D dots: the canvas is the whole square image, so a flip maps x to 1 - x exactly
    (pixel u = 336 x to 336 - u); y stays. Pose scenes are refused by `check_mirror`."""
    if scene.objects and all(isinstance(o, DotObject) for o in scene.objects):
        return Scene([replace(o, x=1.0 - o.x) for o in scene.objects])
    r = camera_axes(camera)[0]          # once per scene: this runs in the training collate
    return Scene([replace(o, loc=_reflect(o.loc, r), rotation=_yaw_reflected(o.rotation, r))
                  for o in scene.objects])


def flip_pixels(pixels):
    """Left-right flip of an image tensor [.., H, W] (any dtype)."""
    return pixels.flip(-1)


def mirror_record(record: dict) -> dict:
    """A CLEVR scene record of the mirrored scene (3d_coords, rotation, pixel_coords x and
    the program change; everything else is kept)."""
    from ...scene.program import format_program, scene_from_clevr
    from .dataset import record_camera
    camera = record_camera(record)
    out = dict(record)
    width = record.get("width")
    objs = []
    for o in record.get("objects", []):
        o = dict(o, **{"3d_coords": list(mirror_point(o["3d_coords"], camera)),
                       "rotation": mirror_yaw(float(o.get("rotation", 0.0)), camera)})
        if width and "pixel_coords" in o:
            px = list(o["pixel_coords"])
            o["pixel_coords"] = [width - px[0], *px[1:]]
        objs.append(o)
    out["objects"] = objs
    out.pop("relationships", None)      # left/right would swap; not needed for evaluation
    if "program" in record:
        out["program"] = format_program(scene_from_clevr(out).canonical(camera=camera))
    return out


def mirror_folder(src, dst) -> int:
    """Write the mirror image of a dataset folder (``images/``, ``scenes.json``) to a new
    folder `dst`: flipped PNGs and mirrored records. Built in a temporary sibling and
    renamed at the end, so a failure leaves no `dst`. Returns the number of images.
    Raises ValueError / FileNotFoundError / FileExistsError with one sentence and the fix."""
    import json
    from pathlib import Path

    from PIL import Image, ImageOps

    from ...atomic import writing_folder

    src, dst = Path(src), Path(dst)
    scenes_path = src / "scenes.json"
    if not scenes_path.is_file():
        raise FileNotFoundError(f"{scenes_path} does not exist; point to a folder made by ig_llm generate")
    if dst.exists():
        raise FileExistsError(f"{dst} already exists; choose a new output folder")
    try:
        scenes = json.loads(scenes_path.read_text())
        records = scenes["scenes"]
        mirrored = [mirror_record(rec) for rec in records]
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"{scenes_path} is not a readable scenes file ({type(err).__name__}: {err}); "
                         "render the folder again with ig_llm generate") from None
    with writing_folder(dst) as tmp:
        (tmp / "images").mkdir(parents=True)
        for rec in records:
            path = src / "images" / rec["image_filename"]
            try:
                with Image.open(path) as img:
                    ImageOps.mirror(img).save(tmp / "images" / rec["image_filename"])
            except (OSError, Image.DecompressionBombError) as err:
                raise ValueError(f"image {path} cannot be read ({err}); re-render it or drop it from "
                                 "scenes.json") from None
        (tmp / "scenes.json").write_text(json.dumps(dict(scenes, scenes=mirrored)))
    return len(records)


if __name__ == "__main__":      # python -m ig_llm.training.data.augment SRC_DIR DST_DIR
    import sys
    if len(sys.argv) != 3:
        sys.exit("usage: python -m ig_llm.training.data.augment SRC_DIR DST_DIR  (mirror a dataset folder)")
    try:
        print(f"{mirror_folder(sys.argv[1], sys.argv[2])} images mirrored into {sys.argv[2]}")
    except (OSError, ValueError) as err:
        sys.exit(f"ig_llm augment: {err}.")
