"""Images and programs -> tensors: image preprocessing and the training collate function.

``preprocess_image`` follows the paper (LLaVA ``image_aspect_ratio=pad``): pad to the
tower's aspect (a square for the paper) with the CLIP mean colour, resize, normalise.
``collate`` builds the text side of a batch; the model inserts the image tokens after
``<bos>`` itself (see ``IGLLM.forward``), so everything here is text-indexed.
"""
from __future__ import annotations

import numpy as np
import torch

from ..images import CLIP_MEAN, CLIP_STD, ImageError, load_image  # noqa: F401 - CLIP_*, ImageError: re-exported
from ..scene.program import NUM_TOKEN, Scene, format_program
from ..scene.domain import load_domain
from .pixels import model_input
from .tokenizer import number_fields, split_pieces  # noqa: F401 - number_fields: re-exported


def image_dims(image_size) -> tuple[int, int]:
    """(width, height) from an int (a square, the paper's) or a (width, height) pair."""
    return (image_size, image_size) if isinstance(image_size, int) else (int(image_size[0]), int(image_size[1]))


def preprocess_image(img, image_size) -> torch.Tensor:
    """PIL image, file path or numpy array -> normalised FloatTensor [3, height, width].

    `image_size` is an int (a square, the paper's) or (width, height) — an IGLLMConfig's
    ``image_dims``. The image is read by :func:`..images.load_image` (every mode to 8-bit
    RGB, alpha over the CLIP mean colour, EXIF orientation, size checked first; ImageError
    names the file), padded to the target aspect with the CLIP mean colour (a 3:2 render
    into a 3:2 tower is not padded at all), then resized (bicubic).
    """
    rgb = load_image(img)
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
