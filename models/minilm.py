"""MiniLM-L6 sentence encoder (sentence-transformers' all-MiniLM-L6-v2): a 6-layer BERT, hidden 384, 12 heads,
whose state_dict matches HuggingFace ``BertModel`` key for key (as saved in the model's ``model.safetensors``),
followed by mean pooling over the real tokens and L2 normalisation (the model's modules.json: Transformer ->
Pooling(mean) -> Normalize).

Input: ``input_ids``, ``attention_mask`` [B, S] int64 (token type 0 throughout, as sentence-transformers feeds a
single sentence); output: [B, 384] unit-norm embeddings. Inference only: no dropout (fine-tuning runs the model in
eval mode anyway, see ``ssvq_deploy.train.finetune``).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class BertConfig:
    """The fields of a HuggingFace BERT ``config.json`` this encoder uses; defaults are MiniLM-L6-H384."""

    vocab_size: int = 30522
    hidden_size: int = 384
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 1536
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12

    @classmethod
    def from_json(cls, path: str | Path) -> "BertConfig":
        raw = json.loads(Path(path).read_text())
        if raw.get("hidden_act", "gelu") != "gelu" or raw.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"{path}: only hidden_act 'gelu' and absolute positions are supported")
        return cls(**{k: raw[k] for k in cls.__dataclass_fields__ if k in raw})


class Embeddings(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden_size, padding_idx=0)
        self.position_embeddings = nn.Embedding(c.max_position_embeddings, c.hidden_size)
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        # Persistent, as in the checkpoint file (older transformers saved it).
        self.register_buffer("position_ids", torch.arange(c.max_position_embeddings)[None])

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None) -> torch.Tensor:
        positions = self.position_ids[:, :input_ids.shape[1]]
        types = (self.token_type_embeddings.weight[0] if token_type_ids is None
                 else self.token_type_embeddings(token_type_ids))
        return self.LayerNorm(self.word_embeddings(input_ids) + self.position_embeddings(positions) + types)


class SelfAttention(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        if c.hidden_size % c.num_attention_heads:
            raise ValueError(f"hidden_size {c.hidden_size} is not a multiple of {c.num_attention_heads} heads")
        self.heads, self.head_dim = c.num_attention_heads, c.hidden_size // c.num_attention_heads
        self.query = nn.Linear(c.hidden_size, c.hidden_size)
        self.key = nn.Linear(c.hidden_size, c.hidden_size)
        self.value = nn.Linear(c.hidden_size, c.hidden_size)

    def _split(self, x: torch.Tensor) -> torch.Tensor:  # [B, S, H*Dh] -> [B, H, S, Dh]
        return x.unflatten(-1, (self.heads, self.head_dim)).transpose(1, 2)

    def forward(self, x: torch.Tensor, mask_bias: torch.Tensor) -> torch.Tensor:
        q, k, v = self._split(self.query(x)), self._split(self.key(x)), self._split(self.value(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim) + mask_bias  # [B, H, S, S]
        return (scores.softmax(-1) @ v).transpose(1, 2).flatten(2)


class AddNorm(nn.Module):
    """``LayerNorm(dense(x) + residual)``: BERT's attention.output and output blocks."""

    def __init__(self, inp: int, out: int, eps: float):
        super().__init__()
        self.dense = nn.Linear(inp, out)
        self.LayerNorm = nn.LayerNorm(out, eps=eps)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class Attention(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.self = SelfAttention(c)  # HuggingFace's key names: attention.self.query ...
        self.output = AddNorm(c.hidden_size, c.hidden_size, c.layer_norm_eps)

    def forward(self, x: torch.Tensor, mask_bias: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(x, mask_bias), x)


class Intermediate(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.intermediate_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))  # exact (erf) GELU: BERT's "gelu"


class Layer(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.attention = Attention(c)
        self.intermediate = Intermediate(c)
        self.output = AddNorm(c.intermediate_size, c.hidden_size, c.layer_norm_eps)

    def forward(self, x: torch.Tensor, mask_bias: torch.Tensor) -> torch.Tensor:
        x = self.attention(x, mask_bias)
        return self.output(self.intermediate(x), x)


class Encoder(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList(Layer(c) for _ in range(c.num_hidden_layers))

    def forward(self, x: torch.Tensor, mask_bias: torch.Tensor) -> torch.Tensor:
        for layer in self.layer:
            x = layer(x, mask_bias)
        return x


class DenseParameters(nn.Module):
    """A ``weight`` [out, in] and ``bias`` [out] pair that is deliberately not an ``nn.Linear``."""

    def __init__(self, inp: int, out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(out, inp))
        self.bias = nn.Parameter(torch.zeros(out))


class Pooler(nn.Module):
    """BertModel's pooler, ``tanh(dense(h[CLS]))``. Kept so that HuggingFace checkpoints load key for key, but the
    sentence embedding (mean pooling) never uses it, so it is not part of the exported graph; its ``dense`` is not
    an ``nn.Linear``, so compression and its accounting (which cover Conv2d / Linear layers) leave it out too."""

    def __init__(self, c: BertConfig):
        super().__init__()
        self.dense = DenseParameters(c.hidden_size, c.hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return torch.tanh(F.linear(hidden_states[:, 0], self.dense.weight, self.dense.bias))


class MiniLM(nn.Module):
    """BERT encoder + mean pooling + L2 normalisation: ``forward(input_ids, attention_mask)`` -> [B, hidden]."""

    def __init__(self, config: BertConfig = BertConfig()):
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.encoder = Encoder(config)
        self.pooler = Pooler(config)

    def token_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                     token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """BertModel's last hidden state [B, S, hidden]."""
        dtype = self.embeddings.LayerNorm.weight.dtype
        # Additive mask as in HuggingFace: 0 for real tokens, the most negative finite float for padding.
        mask_bias = (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min
        return self.encoder(self.embeddings(input_ids, token_type_ids), mask_bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        states = self.token_states(input_ids, attention_mask)
        mask = attention_mask[..., None].to(states.dtype)
        mean = (states * mask).sum(1) / mask.sum(1).clamp_min(1e-9)  # sentence-transformers' mean pooling
        return F.normalize(mean, p=2.0, dim=-1)


class Tokenizer:
    """The model's own WordPiece tokenizer (its ``tokenizer.json``: BERT uncased normalisation and
    pre-tokenization, WordPiece, ``[CLS] text [SEP]``), run by the ``tokenizers`` library, with truncation to
    ``max_length`` tokens and right padding with ``[PAD]`` (id 0) to ``max_length``."""

    def __init__(self, path: str | Path, max_length: int = 128):
        from tokenizers import Tokenizer as _Tokenizer
        self.max_length = max_length
        self._tok = _Tokenizer.from_file(str(path))
        self._tok.enable_truncation(max_length)
        self._tok.enable_padding(length=max_length, pad_id=self._tok.token_to_id("[PAD]"), pad_token="[PAD]")

    def token_to_id(self, token: str) -> int | None:
        return self._tok.token_to_id(token)

    def __call__(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``input_ids``, ``attention_mask``: [len(texts), max_length] int64."""
        encodings = self._tok.encode_batch(list(texts))
        ids = torch.tensor([e.ids for e in encodings], dtype=torch.int64)
        mask = torch.tensor([e.attention_mask for e in encodings], dtype=torch.int64)
        return ids, mask
