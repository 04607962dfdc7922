"""Image files -> scene programs with a trained checkpoint: ``Predictor`` and ``predict_image``."""
from __future__ import annotations

from pathlib import Path

from ..errors import UserError

DEFAULT_MODEL_DIR = Path(__file__).parent / "default"


class ModelNotFoundError(UserError, FileNotFoundError):
    """No checkpoint where one was expected."""


class DeviceError(UserError, RuntimeError):
    """A device that this torch cannot use."""


def resolve_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(f"Device {device!r} was asked for but no CUDA GPU is available; use --device cpu or auto.")
    return device


class Predictor:
    """Loads a checkpoint once, then turns images into (Scene, program text).

    model_dir=None uses the shipped default model at ``model/default/``. `threads`
    (optional) sets torch's CPU thread count for this process when the predictor is made.
    """

    def __init__(self, model_dir=None, device: str = "auto", threads: int | None = None,
                 constrained: bool = True, batch_size: int = 8):
        from .checkpoint import load_checkpoint

        if model_dir is None:
            model_dir = DEFAULT_MODEL_DIR
            if not (Path(model_dir) / "config.json").is_file():
                raise ModelNotFoundError(
                    f"The shipped default model is not in {model_dir} yet; train one with "
                    "`python -m ig_llm train-default` or pass model_dir=<checkpoint folder>.")
        if threads:
            import torch
            torch.set_num_threads(int(threads))
        self.model_dir = Path(model_dir)
        self.device = resolve_device(device)
        self.model = load_checkpoint(self.model_dir, device=self.device)
        self.constrained, self.batch_size = constrained, max(1, int(batch_size))

    @property
    def config(self):
        return self.model.config

    def predict(self, images) -> list:
        """[path | PIL.Image | ndarray, ...] -> [(Scene, program text), ...] in input order."""
        import torch

        from .batching import preprocess_image
        from .decoding import generate

        results = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start:start + self.batch_size]
            pixels = torch.stack([preprocess_image(im, self.config.image_dims) for im in chunk])
            for text, scene in generate(self.model, pixels, constrained=self.constrained):
                results.append((scene, text))
        return results


def predict_image(path, model_dir=None, device: str = "auto"):
    """One image -> (Scene, program text)."""
    return Predictor(model_dir, device=device).predict([path])[0]
