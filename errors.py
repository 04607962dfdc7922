"""The one error contract of every command: a :class:`UserError` is something the user
can fix; its ``str()`` is one sentence that names the file and the fix.

``cli.main`` prints it on stderr and exits with code 2; the Blender operator shows it
with ``self.report``. Any other exception is a bug and keeps its traceback.
Pure Python: importable from every room (no bpy, no torch).
"""
from __future__ import annotations

EXCERPT = 40   # characters of user text quoted in a message (a 5 MB token stays out)


class UserError(Exception):
    """A problem the user can fix; str() is the one sentence to show them."""


def excerpt(text, limit: int = EXCERPT) -> str:
    """repr() of `text`, cut to about `limit` characters with an ellipsis."""
    text = str(text)
    if len(text) <= limit:
        return repr(text)
    return repr(text[:limit]) + f"... ({len(text)} characters)"


def brief(err: Exception, limit: int = 120) -> str:
    """An exception's message on one line, cut to `limit` characters: what goes in the
    brackets of a sentence such as 'Checkpoint file X is corrupt (...); copy it again.'."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def worker_message(err: Exception) -> str:
    """The original sentence of an error re-raised by a torch DataLoader worker (whose
    message also carries the worker's traceback text)."""
    text = str(err)
    if "Original Traceback" not in text:
        return text
    last = text.strip().splitlines()[-1]
    return last.split(": ", 1)[1] if ": " in last else last


# -- fixes that are a setting: one source, a wording for each door ------------------------
# The command line names the flag; Blender names the add-on preference and the labels its
# menu shows (panels/preferences.py; tests/test_error_wording.py keeps them equal).
PREFERENCES = "Edit > Preferences > Add-ons > IG-LLM"
INSTALL_BUTTON = "Install PyTorch Runtime"     # operators/deps.INSTALL_BUTTON, the Preferences button
SETTINGS = {   # setting -> (flag, preference label, {value: label in the preference's menu})
    "runtime": ("--runtime", "Runtime", {"auto": "Auto", "numpy": "NumPy", "torch": "PyTorch"}),
    "device": ("--device", "Device", {"auto": "Auto", "cpu": "CPU", "cuda": "CUDA", "mps": "MPS"}),
}
DOORS = ("cli", "blender")


def setting_fix(setting: str, values, door: str = "cli", install: bool = False) -> str:
    """The fix 'choose one of `values` for `setting`' (and optionally 'install the torch
    runtime'), worded for the command line or for Blender's add-on preferences."""
    flag, label, names = SETTINGS[setting]
    if door == "blender":
        fix = f"set {label} to {' or '.join(names[v] for v in values)} in {PREFERENCES}"
        return fix + (f", or click '{INSTALL_BUTTON}' there" if install else "")
    if door != "cli":
        raise ValueError(f"door {door!r} is not one of {DOORS}")
    return f"use {flag} {' or '.join(values)}" + (", or install the torch runtime" if install else "")


class SettingError(UserError):
    """A user error whose fix is a setting (the runtime, the device): one sentence, worded
    for the door it is shown at. ``str()`` names the command-line flag (what ``cli.main``
    prints); :meth:`for_blender` gives the same error naming the add-on preference (what
    the Blender operator shows)."""

    def __init__(self, problem: str, setting: str, values, install: bool = False, door: str = "cli"):
        values = tuple(values)
        super().__init__(problem, setting, values, install, door)
        self.problem, self.setting, self.values, self.install, self.door = problem, setting, values, install, door

    def wording(self, door: str) -> str:
        return f"{self.problem}; {setting_fix(self.setting, self.values, door, self.install)}."

    def __str__(self) -> str:
        return self.wording(self.door)

    def for_blender(self) -> "SettingError":
        """This error worded for Blender (same class, same parts)."""
        return type(self)(self.problem, self.setting, self.values, self.install, "blender")
