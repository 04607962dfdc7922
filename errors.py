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
