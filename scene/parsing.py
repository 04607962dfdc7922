"""The pieces of the scene-program language that program.py (CLEVR lines) and
task_program.py (2D and SO(3) lines) share: the tokenizer of one line with its cursor
(:class:`Line`), the ``add(name=value, ...)`` call reader, the quoted-word and number
readers, the number writer, and :class:`ProgramError` (line, column, what was expected).
Both import this module; task_program.py never imports program.py, which hands it the
non-CLEVR lines, so the dependency points one way. Pure Python: no bpy, no torch.
"""
from __future__ import annotations

import math
import re

from ..errors import UserError, excerpt
from .domain import Domain

NUM_TOKEN = "<num>"          # the numeric head's placeholder, one per number
CHAR_NUMBER_FORMAT = "{:+.3f}"  # the character baseline's number format (paper)


class ProgramError(UserError, ValueError):
    """A program that cannot be parsed or names something the domain does not know."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None):
        self.line, self.column, self.reason = line, column, message
        where = f"line {line}, column {column}: " if line is not None else ""
        super().__init__(f"Malformed scene program: {where}{message}")


def number_writer(numbers: str, fmt: str, values: list):
    """One number of a program line as text: ``<num>`` (the value appended to `values`) when
    `numbers` is "placeholder", else `fmt` (tiny values written as 0, never "-0.000")."""
    def num(v: float) -> str:
        if numbers == "placeholder":
            values.append(float(v))
            return NUM_TOKEN
        return fmt.format(0.0 if abs(v) < 5e-4 else v)
    return num


# ---------------------------------------------------------------------------------------
# one line
# ---------------------------------------------------------------------------------------
TOKEN_RE = re.compile(r"""
    (?P<ws>[ \t]+)
  | (?P<num>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<placeholder><num>)
  | (?P<name>[A-Za-z_][A-Za-z_0-9]*)
  | (?P<str>'[^'\n]*'|"[^"\n]*")
  | (?P<punct>[(),=])
""", re.VERBOSE | re.ASCII)   # ASCII: "١٢" is not a number, "ｘ" is not a name


class Line:
    """Tokens of one source line with a cursor."""

    def __init__(self, text: str, lineno: int):
        self.lineno, self.tokens, pos = lineno, [], 0
        while pos < len(text):
            m = TOKEN_RE.match(text, pos)
            if not m:
                raise ProgramError(f"unexpected character {text[pos]!r} (expected ASCII names, digits, "
                                   "quotes, '(', ')', ',' or '=')", lineno, pos + 1)
            if m.lastgroup != "ws":
                self.tokens.append((m.lastgroup, m.group(), pos + 1))
            pos = m.end()
        self.i = 0
        self.end_col = len(text) + 1

    def peek(self):
        return self.tokens[self.i] if self.i < len(self.tokens) else ("eol", "end of line", self.end_col)

    def take(self, kind: str, value: str | None = None, expected: str | None = None):
        tok = self.peek()
        if tok[0] != kind or (value is not None and tok[1] != value):
            want = expected or (repr(value) if value else kind)
            found = "end of line" if tok[0] == "eol" else excerpt(tok[1])
            raise ProgramError(f"expected {want}, found {found}", self.lineno, tok[2])
        self.i += 1
        return tok


def parse_call(ln: Line, names, read_value, unknown: str) -> dict:
    """`add(name=value, ...)` to the end of the line, as {name: value}: each name one of
    `names` and given once (`unknown` ends the error for any other); `read_value(name)`
    reads the value after `name=`. The caller checks which names are required."""
    ln.take("name", "add", expected="'add'")
    ln.take("punct", "(", expected="'(' after add")
    fields: dict = {}
    first = True
    while ln.peek()[:2] != ("punct", ")"):
        if not first:
            ln.take("punct", ",", expected="',' or ')'")
            if ln.peek()[:2] == ("punct", ")"):
                break  # trailing comma
        first = False
        _, name, col = ln.take("name", expected="an attribute name")
        if name not in names:
            raise ProgramError(f"unknown attribute {excerpt(name)}{unknown}", ln.lineno, col)
        if name in fields:
            raise ProgramError(f"attribute {name!r} given twice (expected each attribute once)", ln.lineno, col)
        ln.take("punct", "=", expected=f"'=' after {name}")
        fields[name] = read_value(name)
    ln.take("punct", ")", expected="')'")
    tok = ln.peek()
    if tok[0] != "eol":
        raise ProgramError(f"expected end of line after ')', found {excerpt(tok[1])}", ln.lineno, tok[2])
    return fields


def parse_word(ln: Line, attr: str, domain: Domain) -> str:
    kind, raw, col = ln.take("str", expected=f"a quoted {attr} name")
    try:
        return domain.canonical(attr, raw[1:-1])
    except KeyError:
        raise ProgramError(f"unknown {attr} {excerpt(raw[1:-1])} (expected one of {', '.join(domain.all_words(attr))})",
                           ln.lineno, col) from None


def parse_number(ln: Line, queue, domain: Domain, limit: float | None = None) -> float:
    kind, raw, col = ln.peek()
    if kind == "placeholder":
        ln.i += 1
        if queue is None:
            raise ProgramError("<num> placeholder but no numeric values were given (expected a number here)", ln.lineno, col)
        if not queue:
            raise ProgramError("more <num> placeholders than numeric values (expected one value per <num>)", ln.lineno, col)
        value = float(queue.pop(0))
    else:
        kind, raw, col = ln.take("num", expected="a number")
        value = float(raw)
    limit = limit or domain.max_abs_coordinate
    if not math.isfinite(value) or abs(value) > limit:
        raise ProgramError(f"number {value:g} is out of range (|value| <= {limit:g}); expected a finite number within that range", ln.lineno, col)
    return value
