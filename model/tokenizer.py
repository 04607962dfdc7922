"""Program tokenizer: text <-> token ids, piece by piece.

A program is cut into *pieces* by one regex (``split_pieces``): ``add(``, ``shape=``,
``'cube'``, ``, ``, ``loc=(``, ``<num>``, ``)``, newline, and single characters for the
digits, sign and point of character-mode numbers. Every piece is encoded on its own and
the ids are concatenated. That makes the token sequence of a program a pure function of
its pieces, which is what the grammar-constrained decoder (``decoding.py``) relies on:
it knows the exact ids of every piece it may emit, for any tokenizer.

Two back ends:
- built LMs: a ``tokenizers`` WordLevel tokenizer whose vocabulary *is* the pieces of
  the domain (one id per piece), saved as ``tokenizer.json``;
- loaded LMs (``lm_path``): the LM's own Hugging Face tokenizer plus one added ``<num>``
  token; each piece is tokenised separately (usually several ids).
"""
from __future__ import annotations

import re
from pathlib import Path

from ..scene.domain import ATTRIBUTES, load_domain
from ..scene.program import FIELD_ORDER, NUM_TOKEN, PROMPT

SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>", NUM_TOKEN)
PUNCT_PIECES = ("add(", "\n", ", ", ",", "(", ")", " ", "+", "-", ".", *"0123456789")

# Order matters: longer pieces first. Anything else (prompt words) is a run of
# non-space characters.
PIECE_RE = re.compile(r"""<num>|<[a-z]+>|add\(|[A-Za-z_]+=\(?|'[^'\n]*'|, |[,()\n +\-.0-9]|[^\s,()'=]+|\S""")


def split_pieces(text: str) -> list[str]:
    """Cut text into the pieces every back end encodes one by one."""
    return PIECE_RE.findall(text)


def number_fields(pieces) -> list[str]:
    """Field name of every number in a piece sequence, in order: loc0/loc1/loc2/rotation
    (CLEVR); x/y (2D); rotation0..rotation5 (a pose's ``rotation=(…)`` tuple).

    A number is a ``<num>`` piece or, in character mode, a run of sign/digit/point pieces.
    """
    fields, current, index, in_tuple, in_number = [], None, 0, False, False
    for p in pieces:
        is_num_char = p in ("+", "-", ".") or p.isdigit()
        if p.endswith("=(") and p[:-2].isidentifier():
            current, index, in_tuple = p[:-2], 0, True
        elif p.endswith("=") and p[:-1].isidentifier():
            current, in_tuple = p[:-1], False
        elif p in (", ", ",") and in_tuple:
            index += 1
        elif p == ")":
            current, in_tuple = None, False
        if p == NUM_TOKEN or (is_num_char and not in_number):
            fields.append(f"{current}{index}" if in_tuple else (current or "rotation"))
        in_number = is_num_char
    return fields


def attribute_piece(name: str) -> str:
    return "loc=(" if name == "loc" else f"{name}="


def domain_pieces(domain_name: str) -> list[str]:
    """All pieces a program of this domain can contain, plus the prompt's words."""
    domain = load_domain(domain_name)
    pieces = list(SPECIALS) + list(PUNCT_PIECES)
    pieces += [attribute_piece(f) for f in FIELD_ORDER]
    if domain.kind != "clevr":     # the 2D / SO(3) tasks' fields: x=, y= / shape=, rotation=(
        from ..scene.task_program import fields
        pieces += ["rotation=(" if f == "rotation" else f"{f}=" for f in fields(domain)]
    for attr in ATTRIBUTES:
        pieces += [f"'{w}'" for w in domain.all_words(attr)]
    pieces += split_pieces(PROMPT)
    seen, out = set(), []
    for p in pieces:  # keep first occurrence, stable ids
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


class JsonWordLevel:
    """The part of a ``tokenizers`` WordLevel tokenizer that ProgramTokenizer reads
    (its vocabulary), straight from ``tokenizer.json``: Blender has no ``tokenizers``.
    Encoding is piece by piece (``piece_ids``), so nothing else is needed."""

    def __init__(self, path):
        import json

        data = json.loads(Path(path).read_text(encoding="utf-8"))
        self._vocab = dict(data["model"]["vocab"])
        for added in data.get("added_tokens", []):
            self._vocab.setdefault(added["content"], added["id"])

    def get_vocab(self) -> dict:
        return dict(self._vocab)

    def get_vocab_size(self) -> int:
        return max(self._vocab.values()) + 1


class ProgramTokenizer:
    """Encode/decode programs; knows the special ids the model needs."""

    def __init__(self, backend, kind: str):
        self.backend, self.kind = backend, kind  # kind: "wordlevel" | "hf"
        if kind == "wordlevel":
            vocab = backend.get_vocab()
            self._vocab = vocab
            self._itos = {i: t for t, i in vocab.items()}
            self.pad_id, self.bos_id = vocab["<pad>"], vocab["<bos>"]
            self.eos_id, self.unk_id = vocab["<eos>"], vocab["<unk>"]
            self.num_id = vocab[NUM_TOKEN]
            self.vocab_size = backend.get_vocab_size()
        else:
            tok = backend
            self.num_id = tok.convert_tokens_to_ids(NUM_TOKEN)
            self.eos_id = tok.eos_token_id
            self.bos_id = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
            self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else self.eos_id
            self.unk_id = tok.unk_token_id
            self.vocab_size = len(tok)
        self._piece_cache: dict[str, tuple[int, ...]] = {}

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def build(cls, domain_name: str = "clevr") -> "ProgramTokenizer":
        """A WordLevel tokenizer over the domain's program pieces."""
        from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

        vocab = {p: i for i, p in enumerate(domain_pieces(domain_name))}
        tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.Split(Regex(PIECE_RE.pattern), behavior="isolated")
        tok.decoder = decoders.Fuse()
        tok.add_special_tokens(list(SPECIALS))
        return cls(tok, "wordlevel")

    @classmethod
    def from_hf(cls, path: str) -> "ProgramTokenizer":
        """A local Hugging Face tokenizer plus the ``<num>`` token. Never downloads."""
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        if NUM_TOKEN not in tok.get_vocab():
            tok.add_tokens([NUM_TOKEN], special_tokens=True)
        return cls(tok, "hf")

    def save(self, out_dir: str | Path) -> None:
        """Write ``tokenizer.json`` (and, for HF tokenizers, their side files)."""
        out_dir = Path(out_dir)
        if self.kind == "wordlevel":
            self.backend.save(str(out_dir / "tokenizer.json"))
        else:
            self.backend.save_pretrained(str(out_dir))
            if not (out_dir / "tokenizer.json").is_file():
                raise ValueError("this Hugging Face tokenizer has no fast (tokenizer.json) form; "
                                 "use a model folder with a fast tokenizer")

    @classmethod
    def load(cls, in_dir: str | Path, kind: str) -> "ProgramTokenizer":
        in_dir = Path(in_dir)
        if kind == "wordlevel":
            try:
                from tokenizers import Tokenizer
            except ImportError:  # inside Blender: a word-level vocabulary is plain JSON
                return cls(JsonWordLevel(in_dir / "tokenizer.json"), "wordlevel")
            return cls(Tokenizer.from_file(str(in_dir / "tokenizer.json")), "wordlevel")
        return cls.from_hf(str(in_dir))

    # -- encoding ---------------------------------------------------------------------------
    def piece_ids(self, piece: str) -> tuple[int, ...]:
        """Token ids of one piece (cached)."""
        ids = self._piece_cache.get(piece)
        if ids is None:
            if self.kind == "wordlevel":
                ids = (self._vocab.get(piece, self.unk_id),)
            elif piece == NUM_TOKEN:
                ids = (self.num_id,)
            else:
                ids = tuple(self.backend.encode(piece, add_special_tokens=False))
            self._piece_cache[piece] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        return [i for p in split_pieces(text) for i in self.piece_ids(p)]

    def prompt_ids(self) -> list[int]:
        """``<bos>`` then the question and a newline; the reply follows directly."""
        return [self.bos_id] + self.encode(PROMPT + "\n")

    def decode(self, ids) -> str:
        ids = [int(i) for i in ids if int(i) not in (self.pad_id, self.bos_id, self.eos_id)]
        if self.kind == "wordlevel":
            return "".join(self._itos.get(i, "<unk>") for i in ids)
        return self.backend.decode(ids, skip_special_tokens=False)
