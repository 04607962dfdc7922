"""Import-order fix for torchvision beside the CPU build of torch (the one place it lives).

PyPI's torchvision wheel is a CUDA build. Beside the CPU torch its compiled extension
does not load, and ``import torchvision`` fails with ``operator torchvision::nms does
not exist`` while registering fake kernels. Both ``open_clip`` and ``transformers``
import torchvision, so every model module imports this one first.

The fix declares the two op *schemas* (``nms`` and ``qnms``) in a library fragment kept
alive at module level, so torchvision's registrations find them. The real kernels stay
unavailable; nothing in this project calls them. Where torchvision loads normally the
ops exist and this module does nothing.
"""
from __future__ import annotations

import torch

_TORCHVISION_FRAGMENT = None  # keep a reference: the schemas vanish when it is collected


def _has_nms() -> bool:
    try:
        torch.ops.torchvision.nms  # noqa: B018 - attribute lookup is the test
        return True
    except (AttributeError, RuntimeError):
        return False


def ensure_torchvision_importable() -> None:
    """Declare torchvision's op schemas when its compiled ops did not load. Idempotent."""
    global _TORCHVISION_FRAGMENT
    if _TORCHVISION_FRAGMENT is not None or _has_nms():
        return
    lib = torch.library.Library("torchvision", "FRAGMENT")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _TORCHVISION_FRAGMENT = lib


ensure_torchvision_importable()
