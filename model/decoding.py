"""Batched greedy decoding with the KV cache, grammar constraints and jump-forward.

The grammar (``ProgramGrammar``) is a small generator that yields *slots*: lists of
alternatives, each a tuple of program pieces. A slot with one alternative is *forced*
(``add(``, ``shape=``, ``, ``, ``loc=(``, ``<num>``, ``)`` ...); only slots with several
alternatives (continue or stop, shape, colour, material, size, and in character mode
every digit) are *decisions* that need the model. Forced tokens are appended to the
token chosen at the last decision and fed to the LM in the same forward call
("jump-forward"), so in ``head`` mode a CLEVR object costs five forward calls.

Numbers in ``head`` mode: the numeric head reads the hidden state at the position
before each ``<num>`` token (the state whose logits would predict ``<num>``) — the
same state training supervises — straight from the forward call that fed those
tokens. No extra pass.

Every constrained output parses with ``scene.program.parse``: attribute names and
words come from the domain, syntax is balanced, rotation is written exactly for shapes
that have one, numbers stay inside the domain's limits, and at most ``max_objects``
objects are written.
"""
from __future__ import annotations

from . import compat  # noqa: F401

import math
from dataclasses import dataclass

import torch

from ..scene.domain import ATTRIBUTES, load_domain
from ..scene.program import CHAR_NUMBER_FORMAT, FIELD_ORDER, NUM_TOKEN, ProgramError, Scene, parse
from .batching import number_fields
from .tokenizer import attribute_piece, split_pieces

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
            yield from self._object()
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

    def _number(self, field: str, limit: float):
        if self.head:
            yield Slot(((NUM_TOKEN,),), number_field=field)
            return
        # character mode, {:+.3f}: sign, integer part (n.999 must stay within the limit), point, 3 digits
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


class _ConstrainedSeq:
    """One sequence's walk through the grammar. ``run`` holds tokens still to be fed."""

    def __init__(self, grammar: ProgramGrammar, max_objects: int, exact: int | None):
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
        text = _fill_numbers(self.pieces, self.values)
        return text, parse(text, domain=self.g.domain, max_objects=config.max_objects)


class _FreeSeq:
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
        text = _fill_numbers(pieces, self.values)
        try:
            return text, parse(text, domain=load_domain(config.domain), max_objects=config.max_objects)
        except ProgramError:
            return text, None


def _format_number(v: float) -> str:
    return CHAR_NUMBER_FORMAT.format(0.0 if abs(v) < 5e-4 else v)


def _fill_numbers(pieces, values) -> str:
    vals = iter(values)
    out = []
    for p in pieces:
        if p == NUM_TOKEN:
            v = next(vals, None)
            out.append(p if v is None else _format_number(v))
        else:
            out.append(p)
    return "".join(out)


@torch.inference_mode()
def generate(model, pixel_values: torch.Tensor, max_objects: int | None = None, constrained: bool = True,
             num_objects: int | None = None, max_new_tokens: int | None = None,
             stop_at_eos: bool = True, stats: dict | None = None) -> list[tuple[str, Scene | None]]:
    """Greedy decoding for a batch of preprocessed images [B,3,S,S] -> [(program text, Scene)].

    constrained: follow the program grammar (every output parses); otherwise plain
    greedy over the whole vocabulary (the Scene is None when the text does not parse).
    num_objects: force exactly that many objects (benchmarks on untrained weights).
    max_new_tokens / stop_at_eos: unconstrained budget (benchmarks: stop_at_eos=False).
    stats: if a dict is given, receives ``forward_calls`` and ``new_tokens``.
    """
    cfg, tok = model.config, model.tokenizer
    max_objects = max_objects or cfg.max_objects
    model.eval()
    dev = model.device
    B = pixel_values.shape[0]
    grammar = ProgramGrammar(cfg, tok) if constrained else None
    if constrained:
        seqs = [_ConstrainedSeq(grammar, max_objects, num_objects) for _ in range(B)]
    else:
        budget = max_new_tokens or 64 * max_objects
        seqs = [_FreeSeq(tok, budget, stop_at_eos) for _ in range(B)]
    domain = load_domain(cfg.domain)
    limits = {"loc": domain.max_abs_coordinate,
              "rotation": float(domain.limits.get("max_abs_rotation", domain.max_abs_coordinate))}

    # prefill: <bos> image prompt
    from transformers import DynamicCache

    prompt = torch.tensor(tok.prompt_ids(), device=dev)
    text_emb = model.embed_tokens(prompt).unsqueeze(0).expand(B, -1, -1)
    img = model.encode_images(pixel_values).to(text_emb.dtype)
    embeds = model.insert_image(text_emb, img)
    cache = DynamicCache(config=model.causal_lm.config)
    out = model.decoder(inputs_embeds=embeds, past_key_values=cache, use_cache=True)
    last = out.last_hidden_state[:, -1]                # [B, d]: predicts the first reply token
    length = embeds.shape[1]
    next_pos = torch.full((B,), length, dtype=torch.long, device=dev)
    mask = None                                          # full attention mask, once rows diverge
    calls, new_tokens = 1, 0

    while True:
        # 1. feed pending runs (forced tokens, led by the last decision)
        lens = [len(s.run) for s in seqs]
        if any(lens):
            L = max(lens)
            ids = torch.full((B, L), tok.pad_id, dtype=torch.long, device=dev)
            for b, s in enumerate(seqs):
                if s.run:
                    ids[b, :lens[b]] = torch.tensor(s.run, device=dev)
            ragged = any(n != L for n in lens)
            if ragged and mask is None:
                mask = torch.ones((B, length), dtype=torch.long, device=dev)
            pos = next_pos.unsqueeze(1) + torch.arange(L, device=dev).unsqueeze(0)
            if mask is not None:
                step = torch.zeros((B, L), dtype=torch.long, device=dev)
                for b, n in enumerate(lens):
                    step[b, :n] = 1
                mask = torch.cat([mask, step], dim=1)
            out = model.decoder(input_ids=None, inputs_embeds=model.embed_tokens(ids), attention_mask=mask,
                                position_ids=pos, past_key_values=cache, use_cache=True)
            hidden = out.last_hidden_state
            calls += 1
            length += L
            # numbers: state before each <num>
            if model.num_head is not None:
                states, owners = [], []
                for b, s in enumerate(seqs):
                    for j, f in enumerate(s.run_fields):
                        if f is not None:
                            states.append(hidden[b, j - 1] if j else last[b])
                            owners.append((s, f))
                if states:
                    vals = model.num_head(torch.stack(states)).float().tolist()
                    for (s, f), v in zip(owners, vals):
                        v = v * cfg.num_scale(f)
                        lim = limits["loc" if f.startswith("loc") else "rotation"]
                        v = 0.0 if not math.isfinite(v) else max(-lim, min(lim, v))
                        s.values.append(v)
            new_last = last.clone()
            for b, s in enumerate(seqs):
                if lens[b]:
                    new_last[b] = hidden[b, lens[b] - 1]
                    new_tokens += lens[b]
                    next_pos[b] += lens[b]
                    s.run, s.run_fields = [], []
            last = new_last
        # 2. decisions
        active = [b for b, s in enumerate(seqs) if not s.done and s.allowed is not None]
        if not active:
            break
        logits = model.lm_head(last[active]).float()
        for row, b in enumerate(active):
            s = seqs[b]
            if s.allowed == "all":
                s.choose(int(logits[row].argmax()))
            else:
                allowed = s.allowed
                best = allowed[int(logits[row, allowed].argmax())] if len(allowed) > 1 else allowed[0]
                s.choose(best)
    if stats is not None:
        stats.update(forward_calls=calls, new_tokens=new_tokens)
    return [s.text_and_scene(cfg) for s in seqs]
