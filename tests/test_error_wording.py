"""Issue 23, item 4: an error whose fix is a setting names the add-on preference when Blender
shows it, and the flag when the command line prints it. One message source
(``errors.SettingError``), two wordings; the labels are the preferences' own."""
from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest

from ig_llm import errors
from ig_llm.errors import SettingError, UserError

CUDA = False
try:  # a GPU machine cannot be asked for a GPU it lacks
    import torch
    CUDA = torch.cuda.is_available()
except ImportError:
    torch = None


def _blender_wording(text: str, label: str) -> None:
    assert errors.PREFERENCES in text and f"set {label} to " in text, text
    assert "--" not in text and "\n" not in text, text


def test_one_source_two_wordings():
    err = SettingError("Device 'cuda' needs the torch runtime, which is not installed", "device",
                       ("cpu", "auto"), install=True)
    assert str(err) == ("Device 'cuda' needs the torch runtime, which is not installed; use --device cpu or auto, "
                        "or install the torch runtime.")
    blender = err.for_blender()
    assert type(blender) is type(err) and isinstance(blender, UserError)
    assert str(blender) == ("Device 'cuda' needs the torch runtime, which is not installed; set Device to CPU or "
                            "Auto in Edit > Preferences > Add-ons > IG-LLM, or click 'Install PyTorch Runtime' there.")
    assert str(err) == err.wording("cli") and str(blender) == err.wording("blender")
    runtime = SettingError("The torch runtime is not installed", "runtime", ("numpy", "auto"))
    assert "use --runtime numpy or auto." in str(runtime)
    assert "set Runtime to NumPy or Auto in Edit > Preferences > Add-ons > IG-LLM." in str(runtime.for_blender())


def test_every_setting_error_of_the_model_has_both_wordings():
    """model/inference.py's DeviceError is a SettingError: no flag is typed into a sentence."""
    import inspect

    from ig_llm.model import inference

    assert issubclass(inference.DeviceError, SettingError)
    source = inspect.getsource(inference)
    assert "use --" not in source and "; use" not in source
    with pytest.raises(inference.DeviceError) as exc:
        inference.Predictor(runtime="tensorflow")
    assert str(exc.value).endswith("use --runtime auto.")
    _blender_wording(str(exc.value.for_blender()), "Runtime")


def test_the_wording_uses_the_preferences_labels():
    """The labels Blender shows (panels/preferences.py, the install button's bl_label)."""
    pytest.importorskip("bpy")
    import ig_llm
    from ig_llm.operators import deps, install_runtime
    from ig_llm.panels.preferences import IGLLM_AddonPreferences

    ig_llm.register()
    try:
        props = IGLLM_AddonPreferences.bl_rna.properties
        for setting, (flag, label, names) in errors.SETTINGS.items():
            prop = props[setting]
            assert prop.name == label
            assert {item.identifier: item.name for item in prop.enum_items} == names
    finally:
        ig_llm.unregister()
    assert errors.INSTALL_BUTTON == deps.INSTALL_BUTTON == install_runtime.IG_LLM_OT_install_runtime.bl_label


def _job_error(**kwargs):
    """Run the operator's job (task.infer, as Image to Scene runs it) and return the sentence
    the operator reports."""
    pytest.importorskip("bpy")
    from ig_llm.jobs import Job, JobState
    from ig_llm.operators import image_to_scene, task

    image = np.full((48, 72, 3), 128, np.uint8)
    job = Job(task.infer, image, image_name="grey.png", name="image", **kwargs)
    job.run_sync()
    assert job.state is JobState.FAILED and isinstance(job.error, SettingError), job.error_traceback
    return image_to_scene._error_sentence(job)


@pytest.mark.skipif(torch is None or CUDA, reason="needs torch and no CUDA GPU")
def test_operator_names_the_device_preference():
    text = _job_error(device="cuda:7")
    assert text.startswith("Device 'cuda:7' was asked for but no CUDA GPU is available")
    _blender_wording(text, "Device")
    assert "set Device to CPU or Auto" in text


def test_operator_names_the_runtime_preference():
    text = _job_error(runtime="tensorflow")
    _blender_wording(text, "Runtime")
    assert "set Runtime to Auto" in text


@pytest.mark.skipif(torch is None or CUDA, reason="needs torch and no CUDA GPU")
def test_cli_keeps_its_flags(tmp_path, capsys):
    from ig_llm import cli
    from ig_llm.demo import EXAMPLE_IMAGE

    rc = cli.main(["predict", str(EXAMPLE_IMAGE), "--out", str(tmp_path / "p.json"), "--device", "cuda:7"])
    err = capsys.readouterr().err
    assert rc == 2 and "use --device cpu or auto" in err and "Preferences" not in err, err
    assert not (tmp_path / "p.json").exists()


CHILD = r"""
import json, sys
import numpy as np
from ig_llm.jobs import Job
from ig_llm.model.inference import Predictor
from ig_llm.operators import task
out = {}
try:
    Predictor(runtime="torch")
except Exception as err:
    out["cli"] = [type(err).__name__, str(err)]
for key, device in (("blender", "auto"), ("blender_gpu", "cuda")):
    job = Job(task.infer, np.full((48, 72, 3), 128, np.uint8), runtime="torch", device=device, name="image")
    job.run_sync()
    out[key] = [type(job.error).__name__, str(job.error)]
print("RESULT " + json.dumps(out))
"""


def test_without_torch_both_doors_name_their_fix(tmp_path, python_without_torch):
    """Where torch really is missing (Blender as shipped): asking for the torch runtime or a
    GPU names the preference and the install button in Blender, the flags on the command line."""
    from ig_llm.model.bench import bpy_only_path

    path = bpy_only_path(python_without_torch, tmp_path)
    proc = subprocess.run([python_without_torch, "-c", CHILD], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": path})
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = json.loads(lines[-1][7:])
    assert out["cli"] == ["DeviceError", "The torch runtime is not installed; use --runtime numpy or auto, "
                                         "or install the torch runtime."]
    name, text = out["blender"]
    assert name == "DeviceError"
    _blender_wording(text, "Runtime")
    assert text == ("The torch runtime is not installed; set Runtime to NumPy or Auto in Edit > Preferences > "
                    "Add-ons > IG-LLM, or click 'Install PyTorch Runtime' there.")
    name, text = out["blender_gpu"]       # the device is checked first: 'cuda' needs torch
    assert name == "DeviceError"
    _blender_wording(text, "Device")
    assert text == ("Device 'cuda' needs the torch runtime, which is not installed; set Device to CPU or Auto in "
                    "Edit > Preferences > Add-ons > IG-LLM, or click 'Install PyTorch Runtime' there.")
