"""Per-object recolouring: the same render with other object colours, from the per-pixel truth.

CoGenT condition A ties shape to colour (cubes are never red, cylinders never grey), and a
model trained on A learns that tie — the tower in its shape features, the LM in what it
writes. A global hue rotation (stages/tower.py) cannot break all of it: it keeps each
pixel's brightness and saturation, so a grey object stays grey and a bright yellow one
bright. Recolouring each object *independently* to a colour of the palette drawn
uniformly does: in a recoloured image every shape appears in every palette colour, and
the label's colour word changes with it, so the training pair stays correct.

How: CLEVR objects are one albedo under white light ("Standard" view transform, so the PNG
is the linear render in sRGB encoding). A pixel of object k is, to first order, its
albedo times a grey shading term; the shading is the pixel's luminance over the albedo's
luminance, and the new pixel is that shading times the new albedo. Which pixels belong to
object k is exactly the index map (``DIR/index/*.npz``). Not modelled: specular highlights
(white on rubber, recoloured here), what a metal object mirrors (its neighbours' and the
floor's colours, tinted to the new colour here), the floor's coloured bounce light, and
bright albedos the render clipped (cyan, yellow: their recolours come out a little dark).
"""
from __future__ import annotations

import numpy as np

LUMA = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)   # Rec. 709 luminance of linear RGB


def srgb_to_linear(x):
    """sRGB-encoded values in [0, 1] -> linear (works on NumPy arrays and torch tensors)."""
    return ((x + 0.055) / 1.055) ** 2.4 * (x > 0.04045) + x / 12.92 * (x <= 0.04045)


def linear_to_srgb(x):
    """Linear values in [0, 1] -> sRGB encoding (the inverse of :func:`srgb_to_linear`)."""
    return (1.055 * x.clip(0.0031308) ** (1 / 2.4) - 0.055) * (x > 0.0031308) + 12.92 * x * (x <= 0.0031308)


def check_recolour(domain) -> None:
    """Raise ValueError (one sentence) for a domain without CLEVR's object colours."""
    if domain.kind != "clevr":
        raise ValueError(f"--recolour needs CLEVR-style objects with palette colours; the {domain.name} domain "
                         "has none; drop --recolour.")


def palette_linear(domain) -> dict[str, np.ndarray]:
    """Each palette colour's albedo in linear RGB."""
    return {name: srgb_to_linear(np.asarray(domain.rgb(name), dtype=np.float32)) for name in domain.values("color")}


def draw_colours(rng, n: int, names) -> list[str]:
    """`n` colours drawn uniformly and independently from the palette `names` (any shape,
    any colour: the draw ignores the shapes on purpose)."""
    names = list(names)
    return [names[int(rng.random() * len(names)) % len(names)] for _ in range(n)]


def recolour_pixels(pixels, index, old: list, new: list):
    """`pixels` (torch float [3, H, W], sRGB in [0, 1]) with object k (index value k,
    1-based) recoloured from linear albedo ``old[k-1]`` to ``new[k-1]``. `index` is a torch
    integer tensor [H, W] at the pixels' size. Background pixels are returned unchanged."""
    import torch
    lin = srgb_to_linear(pixels)
    luma = torch.from_numpy(LUMA).to(lin)
    shade = torch.einsum("c,chw->hw", luma, lin)
    out = lin.clone()
    for k, (a_old, a_new) in enumerate(zip(old, new), start=1):
        mask = index == k
        if not bool(mask.any()):
            continue
        scale = shade[mask] / float(LUMA @ a_old)                       # grey shading of each pixel
        out[:, mask] = scale[None, :] * torch.from_numpy(a_new).to(lin)[:, None]
    return linear_to_srgb(out.clamp(0.0, 1.0))


def recolour_example(pixels, index, colours: list[str], rng, palette: dict):
    """Recolour every object of one example to colours drawn by `rng`. `pixels` is an
    8-bit [3, H, W] tensor; returns (8-bit pixels, the new colour of each object, label order)."""
    import torch
    if pixels.dtype != torch.uint8:
        raise TypeError(f"recolour_example takes 8-bit pixels, not {pixels.dtype}")
    new = draw_colours(rng, len(colours), palette)
    x = pixels.float() / 255.0
    x = recolour_pixels(x, torch.as_tensor(index), [palette[c] for c in colours], [palette[c] for c in new])
    return (x * 255.0).round().clamp(0, 255).to(torch.uint8), new
