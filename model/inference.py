"""Image files -> scene programs with a trained checkpoint: ``Predictor`` and ``predict_image``.

Two runtimes, one checkpoint: ``torch`` (training, GPUs, loaded LMs) and ``numpy``
(model/numpy_runtime.py: needs only NumPy and safetensors, so it runs inside Blender
with nothing installed). ``runtime="auto"`` picks torch for a GPU device, numpy on the
CPU (it is faster there for the shipped model: ``ig_llm bench model``), and torch for
models the NumPy runtime does not cover.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from ..errors import SettingError, UserError

DEFAULT_MODEL_DIR = Path(__file__).parent / "default"
RUNTIMES = ("auto", "numpy", "torch")


class ModelNotFoundError(UserError, FileNotFoundError):
    """No checkpoint where one was expected."""


class DeviceError(SettingError, RuntimeError):
    """A device (or runtime) that this installation cannot use. Its fix is a setting, worded
    for the command line (``str()``: ``--device`` / ``--runtime``) or for Blender
    (``for_blender()``: the add-on preference): ``..errors.SettingError``."""


def has_torch() -> bool:
    try:
        return all(importlib.util.find_spec(m) is not None for m in ("torch", "transformers"))
    except (ImportError, ValueError):
        return False


def resolve_device(device: str = "auto") -> str:
    """auto: CUDA, then Apple MPS, then the CPU. Without torch only the CPU exists."""
    if not has_torch():
        if device not in ("auto", "cpu"):
            raise DeviceError(f"Device {device!r} needs the torch runtime, which is not installed", "device",
                              ("cpu", "auto"), install=True)
        return "cpu"
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        return "mps" if mps is not None and mps.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(f"Device {device!r} was asked for but no CUDA GPU is available", "device", ("cpu", "auto"))
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise DeviceError("Device 'mps' was asked for but no Apple GPU is available", "device", ("cpu", "auto"))
    return device


@dataclass
class Prediction:
    scene: object                 # Scene, or None (unconstrained text that does not parse)
    program: str
    confidence: float | None      # 0-1, higher = more like the training scenes; None: not calibrated
    in_domain: bool
    domain: str = "clevr"         # the model's domain: the language of `program`, what to build


class Predictor:
    """Loads a checkpoint once, then turns images into (Scene, program text).

    model_dir=None uses the shipped default model at ``model/default/``. `threads`
    (optional) sets the CPU thread count (torch; NumPy's BLAS is set by its environment).
    """

    def __init__(self, model_dir=None, device: str = "auto", threads: int | None = None,
                 constrained: bool = True, batch_size: int = 8, runtime: str = "auto"):
        from .checkpoint import read_config
        from .confidence import load_domain_check

        if runtime not in RUNTIMES:
            raise DeviceError(f"Runtime {runtime!r} is not one of {', '.join(RUNTIMES)}", "runtime", ("auto",))
        if model_dir is None:
            model_dir = DEFAULT_MODEL_DIR
            if not (Path(model_dir) / "config.json").is_file():
                raise ModelNotFoundError(
                    f"The shipped default model is not in {model_dir} yet; train one with "
                    "`python -m ig_llm train-default` or pass model_dir=<checkpoint folder>.")
        self.model_dir = Path(model_dir)
        self.device = resolve_device(device)
        config, kind = read_config(self.model_dir)
        numpy_ok = config.lm_path is None and kind == "wordlevel"
        if runtime == "auto":
            runtime = "numpy" if (numpy_ok and self.device == "cpu") or not has_torch() else "torch"
        if runtime == "torch" and not has_torch():
            raise DeviceError("The torch runtime is not installed", "runtime", ("numpy", "auto"), install=True)
        self.runtime = runtime
        if runtime == "numpy":
            from .numpy_runtime import load_numpy_model
            self.model = load_numpy_model(self.model_dir)
            width = self.model.tower_tokens_width()
        else:
            import torch

            from .checkpoint import load_checkpoint
            if threads:
                torch.set_num_threads(int(threads))
            self.model = load_checkpoint(self.model_dir, device=self.device)
            width = self.model.vision.width
        self.domain_check = load_domain_check(self.model_dir, width)
        self.constrained, self.batch_size = constrained, max(1, int(batch_size))

    @property
    def config(self):
        return self.model.config

    def predict(self, images) -> list:
        """[path | PIL.Image | ndarray, ...] -> [(Scene, program text), ...] in input order."""
        return [(p.scene, p.program) for p in self.predict_full(images)]

    def _judge(self, tokens) -> tuple[float | None, bool]:
        if self.domain_check is None:
            return None, True
        from .confidence import image_feature
        return self.domain_check.judge(image_feature(tokens))

    def predict_full(self, images) -> list[Prediction]:
        """As :meth:`predict`, with each image's confidence and in-domain flag."""
        results = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start:start + self.batch_size]
            results += self.predict_inputs([self.model_input(im) for im in chunk])
        return results

    def model_input(self, image):
        """One image (path, PIL image, pixel array or ``pixels.Reduced``) -> what the tower
        takes: a float32 [3, height, width] array (NumPy runtime) or tensor (torch). The
        torch runtime's loader (``..images.load_image``) where Pillow is; arrays without it."""
        from . import pixels

        dims = self.config.image_dims
        if self.runtime == "numpy" or isinstance(image, pixels.Reduced):
            rgb = image if isinstance(image, pixels.Reduced) else pixels.rgb_pixels(image)
            x = pixels.model_input(rgb, dims)
            if self.runtime == "numpy":
                return x
            import torch
            return torch.from_numpy(x)
        from .batching import preprocess_image
        return preprocess_image(image, dims)

    def predict_inputs(self, inputs) -> list[Prediction]:
        """[:meth:`model_input` result, ...] -> [Prediction, ...] in input order (one batch)."""
        if self.runtime == "numpy":
            return [self._predict_numpy(x) for x in inputs]
        import torch

        from .decoding import generate

        pixel_values = torch.stack([torch.as_tensor(x) for x in inputs])
        judged = [(None, True)] * len(inputs)
        if self.domain_check is not None:
            with torch.inference_mode():
                vdtype = next(self.model.vision.parameters()).dtype
                tokens = self.model.vision(pixel_values.to(self.model.device, vdtype)).float().cpu().numpy()
            judged = [self._judge(t) for t in tokens]
        return [Prediction(scene, text, conf, ok, self.config.domain)
                for (text, scene), (conf, ok) in zip(generate(self.model, pixel_values, constrained=self.constrained),
                                                     judged)]

    def _predict_numpy(self, x) -> Prediction:
        from . import numpy_runtime

        tokens = self.model.tower_tokens(x)
        conf, ok = self._judge(tokens)
        text, scene = numpy_runtime.generate(self.model, x, constrained=self.constrained, tokens=tokens)
        return Prediction(scene, text, conf, ok, self.config.domain)


def predict_image(path, model_dir=None, device: str = "auto"):
    """One image -> (Scene, program text)."""
    return Predictor(model_dir, device=device).predict([path])[0]
