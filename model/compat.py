"""Import-order fix for torchvision beside the CPU build of torch (the one place it lives).

PyPI's torchvision wheel is a CUDA build. Beside the CPU torch its compiled extension
does not load, and ``import torchvision`` fails with ``operator torchvision::nms does
not exist`` while registering fake kernels. Both ``open_clip`` and ``transformers``
import torchvision, so every model module imports this one first.

The fix: try the real import first (on CUDA machines it works, and declaring the ops
beforehand would make torchvision's own registration abort the process). Only if it
fails with the missing-operator error, declare the two op *schemas* (``nms``, ``qnms``)
in a library fragment kept alive at module level and import again. The real kernels
stay unavailable; nothing in this project calls them.
"""
from __future__ import annotations

import sys

import torch

_TORCHVISION_FRAGMENT = None  # keep a reference: the schemas vanish when it is collected


def ensure_torchvision_importable() -> None:
    """Make ``import torchvision`` work; a no-op where it already does. Idempotent.

    First try the real import: where torchvision's compiled ops load (CUDA machines) it
    registers the real ``nms`` itself, and declaring it beforehand would clash. Only when
    that import fails with the missing-operator error are the schemas declared and the
    half-imported modules dropped before importing again.
    """
    global _TORCHVISION_FRAGMENT
    if _TORCHVISION_FRAGMENT is not None:
        return
    try:
        import torchvision  # noqa: F401
        return
    except ImportError:
        return  # not installed: open_clip/transformers will say so if they need it
    except RuntimeError as err:
        if "torchvision::nms" not in str(err):
            raise
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    lib = torch.library.Library("torchvision", "FRAGMENT")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _TORCHVISION_FRAGMENT = lib
    import torchvision  # noqa: F401,F811 - now succeeds without the compiled ops


ensure_torchvision_importable()
