"""`python -m ig_llm build PROGRAM.txt --out scene.blend [--render out.png] …`

Reads a scene program, builds it on the CLEVR stage in an empty Blender file, saves the
.blend and optionally renders it. Bad input ends with exit code 2 and one sentence on
stderr; nothing is written then (files are written to a temp name and renamed).
"""
from __future__ import annotations

import re
from pathlib import Path

from ..atomic import check_output, writing
from ..errors import UserError

MAX_SIDE, MAX_SAMPLES = 8192, 4096


def add_arguments(parser) -> None:
    parser.add_argument("program", help="scene program text file (one add(...) per line)")
    parser.add_argument("--out", required=True, help="the .blend file to write")
    parser.add_argument("--render", metavar="PNG", help="also render the camera view to this PNG")
    parser.add_argument("--size", default="480x320", metavar="WxH", help="render size (default 480x320, CLEVR's)")
    parser.add_argument("--samples", type=int, default=64, help="Cycles samples for --render (default 64)")
    parser.add_argument("--domain", default="clevr",
                        help="program language: clevr (default), 2d, so3 or so3:euler_int|aa|6d, or an asset "
                             "kit (toys, a kit folder: docs/kits.md)")
    parser.add_argument("--no-stage", action="store_true",
                        help="objects only: no camera, lamps or backdrop (cannot be combined with --render)")


def _parse_size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text or "")
    if not m:
        raise UserError(f"--size {text!r} is not WIDTHxHEIGHT; use e.g. --size 480x320.")
    w, h = int(m.group(1)), int(m.group(2))
    if not (16 <= w <= MAX_SIDE and 16 <= h <= MAX_SIDE):
        raise UserError(f"--size {w}x{h} is out of range; each side must be 16 to {MAX_SIDE} pixels.")
    return w, h


def _check_output(path: str, flag: str, suffix: str, inputs=()) -> Path:
    p = Path(path).expanduser().resolve()
    if p.suffix.lower() != suffix:
        raise UserError(f"{flag} {path} must end in {suffix}; give a file name like scene{suffix}.")
    if not p.parent.is_dir():
        raise UserError(f"The folder {p.parent} for {flag} does not exist; create it or pick another path.")
    return check_output(p, flag, inputs=inputs)


def _load_domain(name: str):
    from .domain import load_domain
    try:
        return load_domain(name)
    except FileNotFoundError as err:
        raise UserError(str(err)) from None


def _read_program(path: str, domain=None):
    from .program import ProgramError, parse

    p = Path(path)
    if not p.is_file():
        raise UserError(f"Program file {path} does not exist; give the path of a text file with add(...) lines.")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"Cannot read program file {path} as UTF-8 text ({err.__class__.__name__}); "
                         f"save it as plain text.") from None
    try:
        scene = parse(text, domain=domain)
    except ProgramError as err:
        raise UserError(f"{path}: {str(err).rstrip('.')}; fix that line and run again.") from None
    if not scene.objects:
        raise UserError(f"Program file {path} has no add(...) lines; write one line per object.")
    return scene


def run(args) -> None:
    """The command; raises UserError on bad input (cli.main turns it into one sentence)."""
    width, height = _parse_size(args.size)
    if not (1 <= args.samples <= MAX_SAMPLES):
        raise UserError(f"--samples {args.samples} is out of range; use 1 to {MAX_SAMPLES}.")
    if args.no_stage and args.render:
        raise UserError("--render needs the camera and lamps, so it cannot be combined with --no-stage; drop one.")
    out = _check_output(args.out, "--out", ".blend", inputs=[args.program])
    render = _check_output(args.render, "--render", ".png", inputs=[args.program]) if args.render else None
    if render is not None and render == out:
        raise UserError(f"--render and --out are the same file {out}; give two different names.")
    domain = _load_domain(args.domain)
    scene = _read_program(args.program, domain)   # parsed and checked before Blender is touched

    write_blend(scene, out, render=render, size=(width, height), samples=args.samples,
                stage=not args.no_stage, source=args.program, domain=domain)


def write_blend(scene, out: Path, *, render: Path | None = None, size=(480, 320), samples: int = 64,
                stage: bool = True, collection_name: str = "IG-LLM Scene", source: str = "program",
                domain=None) -> None:
    """Build `scene` in an empty Blender file (plus the CLEVR stage, or the 2D / SO(3)
    task's camera), save it atomically to `out` and optionally render the camera view to
    `render`. Shared with `demo`."""
    import bpy
    from .builder import build_scene
    from .program import ProgramError
    from .stage import configure_render, quiet_stdout, render_to, setup_stage

    bpy.ops.wm.read_factory_settings(use_empty=True)
    try:
        coll = build_scene(scene, collection_name=collection_name, domain=domain)
    except ProgramError as err:
        raise UserError(f"{source}: {str(err).rstrip('.')}; fix the program and run again.") from None
    if stage and domain is not None and domain.kind != "clevr":
        from .task_builder import add_task_camera, configure_task_render
        bpy.context.scene.camera = add_task_camera(coll, domain)
        configure_task_render(bpy.context.scene, domain, size[0], size[1], samples)
    elif stage:
        setup_stage()
        if domain is not None and domain.kit is not None:
            from .stage import set_floor_colour
            set_floor_colour(None, domain.kit.stage.floor)
        configure_render(size[0], size[1], samples)
    if render is not None:
        render_to(render, quiet=True)
        print(f"Rendered {render}")
    with writing(out) as tmp:
        tmp.unlink()    # a file already there would make Blender keep a .blend1 backup of it
        with quiet_stdout():   # Blender's "Info: Saved …" line
            bpy.ops.wm.save_as_mainfile(filepath=str(tmp), copy=True, compress=True)
    print(f"Wrote {out} ({len(scene.objects)} objects)")


def main(args) -> int:
    run(args)
    return 0
