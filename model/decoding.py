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

import torch

from ..scene.domain import load_domain
from ..scene.program import Scene
# the grammar is pure Python, shared with the NumPy runtime (model/numpy_runtime.py)
from .grammar import EOS, ConstrainedSeq, FreeSeq, ProgramGrammar, Slot, number_limits, store_number  # noqa: F401


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
        seqs = [ConstrainedSeq(grammar, max_objects, num_objects) for _ in range(B)]
    else:
        budget = max_new_tokens or 64 * max_objects
        seqs = [FreeSeq(tok, budget, stop_at_eos) for _ in range(B)]
    limits = number_limits(load_domain(cfg.domain))

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
                        store_number(s, f, v, cfg, limits)
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
