"""The program grammar and the per-sequence walk through it, shared by both runtimes.

Pure Python (no torch, no NumPy): ``decoding.generate`` (torch) and
``numpy_runtime.generate`` (NumPy, inside Blender) drive the same ``ProgramGrammar`` and
``ConstrainedSeq`` objects, so both write the same program for the same logits. See
``decoding.py`` for how slots, decisions and jump-forward work.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..scene.domain import ATTRIBUTES, load_domain
from ..scene.program import CHAR_NUMBER_FORMAT, FIELD_ORDER, NUM_TOKEN, ProgramError, parse
from .tokenizer import attribute_piece, number_fields, split_pieces

EOS = "<eos>"


@dataclass(frozen=True)
class Slot:
    """Alternatives (tuples of pieces) for the next stretch of program text."""
    alts: tuple[tuple[str, ...], ...]
    number_field: str | None = None   # set on a head-mode <num> slot


class ProgramGrammar:
    """The program language of one domain, as slots. Fixed attribute order (FIELD_ORDER)."""

    def __init__(self, config, tokenizer):
        self.config, self.tok = config, tokenizer
        self.domain = load_domain(config.domain)
        self.head = config.numbers == "head"
        # words: canonical ones, plus synonyms when the model was trained with them
        pick = self.domain.all_words if config.train_synonyms else self.domain.values
        self.words = {a: tuple(f"'{w}'" for w in pick(a)) for a in ATTRIBUTES}
        self.limit = {"loc": self.domain.max_abs_coordinate,
                      "rotation": float(self.domain.limits.get("max_abs_rotation", self.domain.max_abs_coordinate))}
        self._tries: dict = {}
        from ..scene.task_program import number_format
        self.number_format = number_format(self.domain)

    # -- the grammar --------------------------------------------------------------------------
    def program(self, max_objects: int, exact: int | None = None):
        """Generator of Slots; receives the index of the chosen alternative after each yield."""
        n = 0
        while True:
            alts = []
            if n < max_objects and (exact is None or n < exact):
                alts.append(("add(",) if n == 0 else ("\n", "add("))
            if exact is None or n >= exact:
                alts.append((EOS,))
            k = yield Slot(tuple(alts))
            if alts[k] == (EOS,):
                return
            yield from (self._object() if self.domain.kind == "clevr" else self._task_object())
            n += 1

    def _object(self):
        shape = None
        for i, f in enumerate(FIELD_ORDER):
            if f == "rotation" and not self.domain.has_rotation(shape):
                continue
            if i:
                yield Slot(((", ",),))
            yield Slot(((attribute_piece(f),),))
            if f in ATTRIBUTES:
                alts = tuple((w,) for w in self.words[f])
                k = yield Slot(alts)
                if f == "shape":
                    shape = self.domain.canonical("shape", alts[k][0][1:-1])
            elif f == "loc":
                for j in range(3):
                    if j:
                        yield Slot(((", ",),))
                    yield from self._number(f"loc{j}", self.limit["loc"])
                yield Slot(((")",),))
            else:
                yield from self._number("rotation", self.limit["rotation"])
        yield Slot(((")",),))

    def _task_object(self):
        """One line of the 2D task (x=, y=) or of a pose task (shape=, rotation=(…)), in the
        formatter's order (training shuffles it; the parser accepts either)."""
        from ..scene.task_program import fields, number_count
        for i, f in enumerate(fields(self.domain)):
            if i:
                yield Slot(((", ",),))
            if f == "shape":
                yield Slot(((attribute_piece(f),),))
                yield Slot(tuple((w,) for w in self.words["shape"]))
            elif f == "rotation":
                yield Slot((("rotation=(",),))
                for j in range(number_count(self.domain)):
                    if j:
                        yield Slot(((", ",),))
                    yield from self._number(f"rotation{j}", self.limit["rotation"])
                yield Slot(((")",),))
            else:
                yield Slot(((f"{f}=",),))
                yield from self._number(f, self.limit["loc"])
        yield Slot(((")",),))

    def _number(self, field: str, limit: float):
        if self.head:
            yield Slot(((NUM_TOKEN,),), number_field=field)
            return
        # character mode, {:+.3f}: sign, integer part (n.999 must stay within the limit), point, 3 digits
        # (the 2D task's {:.3f} has no sign)
        if "+" in self.number_format:
            yield Slot((("+",), ("-",)))
        top = max(0, int(math.floor(limit - 0.999)))
        yield Slot(tuple(tuple(str(n)) + (".",) for n in range(top + 1)))
        for _ in range(3):
            yield Slot(tuple((d,) for d in "0123456789"))

    # -- token view ---------------------------------------------------------------------------
    def alt_ids(self, alt: tuple[str, ...]) -> tuple[int, ...]:
        if alt == (EOS,):
            return (self.tok.eos_id,)
        return tuple(i for p in alt for i in self.tok.piece_ids(p))

    def trie(self, slot: Slot) -> dict:
        """Token trie of a slot's alternatives: {token: subtrie}, leaves {None: alt index}."""
        t = self._tries.get(slot.alts)
        if t is None:
            t = {}
            for k, alt in enumerate(slot.alts):
                node = t
                for i in self.alt_ids(alt):
                    if None in node:
                        raise ValueError(f"ambiguous grammar: {alt} extends another alternative")
                    node = node.setdefault(i, {})
                if node:
                    raise ValueError(f"ambiguous grammar: {alt} is a prefix of another alternative")
                node[None] = k
            self._tries[slot.alts] = t
        return t


class ConstrainedSeq:
    """One sequence's walk through the grammar. ``run`` holds tokens still to be fed."""

    def __init__(self, grammar: "ProgramGrammar", max_objects: int, exact: int | None):
        self.g = grammar
        self.gen = grammar.program(max_objects, exact)
        self.pieces: list[str] = []
        self.values: list[float] = []
        self.run: list[int] = []
        self.run_fields: list[str | None] = []
        self.allowed: list[int] | None = None
        self.done = False
        self.n_tokens = 0
        self._slot = self.gen.send(None)
        self._node = None
        self._settle()

    def _push(self, token: int, field: str | None = None):
        self.run.append(token)
        self.run_fields.append(field)

    def _complete(self, k: int):
        """Alternative k of the current slot is fully emitted; move to the next slot."""
        alt = self._slot.alts[k]
        if alt == (EOS,):
            self.run.pop()
            self.run_fields.pop()
        else:
            self.pieces.extend(alt)
        try:
            self._slot = self.gen.send(k)
        except StopIteration:
            self.done, self._slot = True, None
        self._node = None

    def _settle(self):
        """Emit forced tokens until a real choice (sets ``allowed``) or the end."""
        self.allowed = None
        while not self.done:
            if self._node is None:
                slot = self._slot
                if len(slot.alts) == 1:  # forced: all its tokens go into the run
                    ids = self.g.alt_ids(slot.alts[0])
                    for i in ids:
                        self._push(i, slot.number_field if i == self.g.tok.num_id else None)
                    self._node = {None: 0}
                else:
                    self._node = self.g.trie(slot)
            node = self._node
            if None in node:
                self._complete(node[None])
                continue
            if len(node) == 1:  # forced token inside a multi-token alternative
                (tok, child), = node.items()
                self._push(tok)
                self._node = child
                continue
            self.allowed = list(node)
            return

    def choose(self, token: int):
        self._push(token)
        self._node = self._node[token]
        self._settle()

    def text_and_scene(self, config):
        text = fill_numbers(self.pieces, self.values, self.g.number_format)
        return text, parse(text, domain=self.g.domain, max_objects=config.max_objects)


class FreeSeq:
    """Unconstrained greedy decoding: any token, stop at <eos> or the token budget."""

    def __init__(self, tokenizer, budget: int, stop_at_eos: bool):
        self.tok, self.budget, self.stop_at_eos = tokenizer, budget, stop_at_eos
        self.ids: list[int] = []
        self.values: list[float] = []
        self.run, self.run_fields = [], []
        self.allowed = "all"
        self.done = False

    def choose(self, token: int):
        if (token == self.tok.eos_id and self.stop_at_eos) or len(self.ids) >= self.budget:
            self.done, self.allowed = True, None
            return
        self.ids.append(token)
        field = None
        if token == self.tok.num_id:
            fields = number_fields(split_pieces(self.tok.decode(self.ids)))
            field = fields[-1] if fields else "loc0"
        self.run, self.run_fields = [token], [field]
        if len(self.ids) >= self.budget:
            self.done = True

    def text_and_scene(self, config):
        text = self.tok.decode([i for i in self.ids if i != self.tok.eos_id])
        pieces = split_pieces(text)
        domain = load_domain(config.domain)
        from ..scene.task_program import number_format
        text = fill_numbers(pieces, self.values, number_format(domain))
        try:
            return text, parse(text, domain=domain, max_objects=config.max_objects)
        except ProgramError:
            return text, None


def format_number(v: float, fmt: str = CHAR_NUMBER_FORMAT) -> str:
    return fmt.format(0.0 if abs(v) < 5e-4 else v)


def fill_numbers(pieces, values, fmt: str = CHAR_NUMBER_FORMAT) -> str:
    vals = iter(values)
    out = []
    for p in pieces:
        if p == NUM_TOKEN:
            v = next(vals, None)
            out.append(p if v is None else format_number(v, fmt))
        else:
            out.append(p)
    return "".join(out)


def number_limits(domain) -> dict:
    """|value| limits of the numbers a program may hold, by kind (loc, rotation)."""
    return {"loc": domain.max_abs_coordinate,
            "rotation": float(domain.limits.get("max_abs_rotation", domain.max_abs_coordinate))}


def store_number(seq, field: str, raw: float, config, limits: dict) -> None:
    """Numeric-head output (normalised) -> the value written into the program."""
    v = raw * config.num_scale(field)
    lim = limits["loc" if field.startswith("loc") else "rotation"]
    seq.values.append(0.0 if not math.isfinite(v) else max(-lim, min(lim, v)))
