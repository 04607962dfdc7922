"""Images and programs -> tensors: image preprocessing and the training collate function.

``preprocess_image`` follows the paper (LLaVA ``image_aspect_ratio=pad``): pad to a
square with the CLIP mean colour, resize, normalise with CLIP's mean/std.
``collate`` builds the text side of a batch; the model inserts the image tokens after
``<bos>`` itself (see ``IGLLM.forward``), so everything here is text-indexed.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..scene.program import NUM_TOKEN, Scene, format_program
from ..scene.domain import load_domain
from .pixels import CLIP_MEAN, CLIP_STD, model_input  # noqa: F401 - CLIP_*: re-exported
from .tokenizer import number_fields, split_pieces  # noqa: F401 - number_fields: re-exported

MAX_PIXELS = 50_000_000  # refuse bigger images: a 50 MP decode already needs ~150 MB


class ImageError(ValueError):
    """An image that cannot be used; the message names the file and the fix."""


def _name(src) -> str:
    return str(src) if isinstance(src, (str, Path)) else f"<{type(src).__name__}>"


def _to_pil(src):
    from PIL import Image

    if isinstance(src, Image.Image):
        return src
    if isinstance(src, np.ndarray):
        arr = src
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
            raise ImageError(f"Image array of shape {arr.shape} is not HxW, HxWx3 or HxWx4; pass an "
                             "RGB(A) or grey image.")
        if arr.dtype == np.uint16:
            arr = (arr.astype(np.float32) / 65535.0 * 255.0 + 0.5).astype(np.uint8)
        elif np.issubdtype(arr.dtype, np.floating):
            arr = (np.clip(np.nan_to_num(arr), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        elif arr.dtype != np.uint8:
            raise ImageError(f"Image array of dtype {arr.dtype} is not supported; use uint8, uint16 "
                             "or float in [0, 1].")
        return Image.fromarray(np.ascontiguousarray(arr))
    path = Path(src)
    if not path.is_file():
        raise ImageError(f"Image file {path} does not exist; check the path.")
    if path.stat().st_size == 0:
        raise ImageError(f"Image file {path} is empty; re-export the image.")
    try:
        img = Image.open(path)
    except Exception as err:
        raise ImageError(f"Image file {path} cannot be read as an image ({type(err).__name__}); "
                         "use a PNG, JPEG or other common format.") from None
    return img


def _to_rgb(img, src):
    """Any PIL mode -> 8-bit RGB; alpha is composited over the CLIP mean colour."""
    from PIL import Image

    mean_rgb = tuple(int(round(m * 255)) for m in CLIP_MEAN)
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16-bit / 32-bit grey
        arr = np.asarray(img, dtype=np.float32)
        top = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        if mode == "F":
            top = 1.0 if arr.max(initial=0) <= 1.0 else max(float(arr.max()), 1.0)
        arr = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if mode == "P":
        img = img.convert("RGBA")
    elif mode in ("LA", "La", "RGBa", "PA"):
        img = img.convert("RGBA")
    if img.mode == "RGBA":
        bg = Image.new("RGB", img.size, mean_rgb)
        bg.paste(img.convert("RGB"), mask=img.getchannel("A"))
        return bg
    return img.convert("RGB")


def image_dims(image_size) -> tuple[int, int]:
    """(width, height) from an int (a square, the paper's) or a (width, height) pair."""
    return (image_size, image_size) if isinstance(image_size, int) else (int(image_size[0]), int(image_size[1]))


def preprocess_image(img, image_size) -> torch.Tensor:
    """PIL image, file path or numpy array -> normalised FloatTensor [3, height, width].

    `image_size` is an int (a square, the paper's) or (width, height) — an IGLLMConfig's
    ``image_dims``. Accepts RGB, RGBA (composited over the CLIP mean colour), grey, 16-bit
    and palette images. Pads to the target aspect with the CLIP mean colour (a 3:2 render
    into a 3:2 tower is not padded at all), then resizes (bicubic).
    Raises ImageError naming the file for unreadable, empty or enormous images.
    """
    name = _name(img)
    pil = _to_pil(img)
    w, h = pil.size
    if w == 0 or h == 0:
        raise ImageError(f"Image {name} has no pixels ({w}x{h}); use a non-empty image.")
    if w * h > MAX_PIXELS:
        raise ImageError(f"Image {name} is {w}x{h} pixels, more than the {MAX_PIXELS // 1_000_000} MP "
                         "limit; downscale it first.")
    try:
        rgb = _to_rgb(pil, img)
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"Image {name} cannot be decoded ({err}); the file may be truncated — "
                         "re-export it.") from None
    # letterbox + bicubic + CLIP normalisation: one implementation for both runtimes
    return torch.from_numpy(model_input(np.asarray(rgb), image_dims(image_size), use_pillow=True))


# ---------------------------------------------------------------------------------------
# programs
# ---------------------------------------------------------------------------------------
def program_text(scene: Scene, config, rng=None, camera=None):
    """(reply text, raw number values) for a scene, as the model is trained to write it.

    Objects are written left to right as seen from `camera` (a location; None: CLEVR's)."""
    domain = load_domain(config.domain)
    rng = rng if (rng is not None and config.train_synonyms) else None
    kw = {"camera": tuple(camera)} if camera is not None else {}
    if config.numbers == "head":
        return format_program(scene, "placeholder", domain=domain, rng=rng, **kw)
    return format_program(scene, "char", domain=domain, rng=rng, **kw), []


def collate(examples, tokenizer, config, rng=None) -> dict:
    """[(image tensor [3,S,S], Scene[, camera]), ...] -> batch dict of tensors (right-padded).

    The optional third item is the image's camera location: objects are written left
    to right as that camera sees them (default: CLEVR's base camera).

    Text layout per row: ``<bos> PROMPT \\n reply <eos>``; the model inserts the image
    tokens after ``<bos>``. Keys: pixel_values [B,3,S,S]; input_ids, attention_mask,
    labels (prompt masked with -100) [B,T]; num_mask [B,T] (True at ``<num>`` tokens of
    the reply); num_values [B,T] (normalised values there, 0 elsewhere).
    `rng` (random.Random) picks random synonyms when ``config.train_synonyms``.
    """
    if not examples:
        raise ValueError("collate needs at least one example")
    prompt = tokenizer.prompt_ids()
    rows, pixels = [], []
    for example in examples:
        image, scene = example[0], example[1]
        camera = example[2] if len(example) > 2 else None
        w, h = config.image_dims
        if tuple(image.shape) != (3, h, w):
            raise ValueError(f"image tensor has shape {tuple(image.shape)}, expected "
                             f"(3, {h}, {w}); use preprocess_image")
        pixels.append(image)
        text, values = program_text(scene, config, rng, camera)
        pieces = split_pieces(text)
        reply, nums, targets = [], [], []
        fields = iter(number_fields(pieces)) if values else iter(())
        vals = iter(values)
        for p in pieces:
            ids = tokenizer.piece_ids(p)
            reply += ids
            if p == NUM_TOKEN:
                nums.append(True)
                targets.append(next(vals) / config.num_scale(next(fields)))
            else:
                nums += [False] * len(ids)
                targets += [0.0] * len(ids)
        ids = prompt + reply + [tokenizer.eos_id]
        labels = [-100] * len(prompt) + reply + [tokenizer.eos_id]
        nmask = [False] * len(prompt) + nums + [False]
        ntarg = [0.0] * len(prompt) + targets + [0.0]
        rows.append((ids, labels, nmask, ntarg))
    T = max(len(r[0]) for r in rows)
    B = len(rows)
    input_ids = torch.full((B, T), tokenizer.pad_id, dtype=torch.long)
    attention = torch.zeros((B, T), dtype=torch.long)
    labels = torch.full((B, T), -100, dtype=torch.long)
    num_mask = torch.zeros((B, T), dtype=torch.bool)
    num_values = torch.zeros((B, T), dtype=torch.float32)
    for b, (ids, lab, nm, nt) in enumerate(rows):
        n = len(ids)
        input_ids[b, :n] = torch.tensor(ids)
        attention[b, :n] = 1
        labels[b, :n] = torch.tensor(lab)
        num_mask[b, :n] = torch.tensor(nm)
        num_values[b, :n] = torch.tensor(nt)
    return {"pixel_values": torch.stack(pixels), "input_ids": input_ids, "attention_mask": attention,
            "labels": labels, "num_mask": num_mask, "num_values": num_values}
