"""The µLM: a llama-style decoder-only transformer, whole in one file.

Read top to bottom (nanoGPT's spirit). The architecture is the one llama.cpp
serves as ``llama``, so a trained µLM exports to GGUF tensor by tensor
(``shoal.ulm.export``):

    tokens (B, T)
      -> token embedding                      (B, T, C)
      -> n_layer x Block:
           x = x + Attention(RMSNorm(x))      causal self-attention, RoPE on q and k
           x = x + SwiGLU(RMSNorm(x))         gated MLP
      -> RMSNorm -> x @ embedding^T           (B, T, V)   (tied weights)

Shapes use B batch, T time (tokens), C model width, H heads, D head size
(C = H * D), V vocabulary, F feed-forward width.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class ModelConfig:
    """The shape of a µLM; stored in every checkpoint's JSON."""

    vocab_size: int = 512
    block_size: int = 128  # longest context the model is trained (and served) with
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    #: SwiGLU hidden width; 0 = llama's rule (8/3 * C rounded up to a multiple of 32)
    ffn_hidden: int = 0
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")
        if (self.n_embd // self.n_head) % 2:
            raise ValueError("the head size (n_embd / n_head) must be even for rotary embeddings")
        if self.ffn_hidden <= 0:
            self.ffn_hidden = 32 * math.ceil(8 * self.n_embd / 3 / 32)

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model keys: {', '.join(sorted(unknown))}")
        return cls(**d)


class RMSNorm(nn.Module):
    """x / rms(x) * weight — llama's LayerNorm without the mean and the bias (cheaper, as good)."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # normalise in float32 even if x is lower precision: the mean of squares underflows otherwise
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return xf.type_as(x) * self.weight


def rope_tables(head_dim: int, length: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotation angles, each (T, D/2): position t turns pair i by t * theta^(-2i/D)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))  # (D/2,)
    angles = torch.outer(torch.arange(length, dtype=torch.float32), inv_freq)  # (T, D/2)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each adjacent pair (x[2i], x[2i+1]) of every head by its position's angle.

    x is (B, H, T, D); cos/sin are (T, D/2). Adjacent pairs (not the two halves HF
    uses) are what llama.cpp's ``llama`` arch rotates, so q and k export unpermuted.
    """
    x1, x2 = x.float().unflatten(-1, (-1, 2)).unbind(-1)  # each (B, H, T, D/2)
    out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)  # (B, H, T, D/2, 2)
    return out.flatten(-2).type_as(x)  # (B, H, T, D)


class Attention(nn.Module):
    """Causal multi-head self-attention with rotary positions, via torch's fused SDPA kernel."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_head, self.head_dim = cfg.n_head, cfg.head_dim
        # separate q/k/v (not one fused matrix) because GGUF stores attn_q, attn_k, attn_v apart
        self.wq = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)
        self.wk = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)
        self.wv = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)
        self.wo = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        # (B, T, C) -> (B, H, T, D)
        q = self.wq(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        k = self.wk(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        v = self.wv(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0
        )  # (B, H, T, D)
        return self.wo(y.transpose(1, 2).reshape(B, T, C))  # (B, T, C)


class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x)): the gated MLP llama uses (better than GELU at the same cost)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.gate = nn.Linear(cfg.n_embd, cfg.ffn_hidden, bias=False)
        self.up = nn.Linear(cfg.n_embd, cfg.ffn_hidden, bias=False)
        self.down = nn.Linear(cfg.ffn_hidden, cfg.n_embd, bias=False)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.down(F.silu(self.gate(x)) * self.up(x)))  # (B, T, F) -> (B, T, C)


class Block(nn.Module):
    """Pre-norm residual block: the residual stream x is only ever added to."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.attn = Attention(cfg)
        self.ffn_norm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.ffn = SwiGLU(cfg)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), cos, sin)
        return x + self.ffn(self.ffn_norm(x))


class ULM(nn.Module):
    """The µLM. ``forward(idx)`` gives logits (B, T, V); with targets also the mean cross-entropy."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        cos, sin = rope_tables(cfg.head_dim, cfg.block_size, cfg.rope_theta)
        # buffers, not parameters: recomputed from the config, so not saved in checkpoints
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init)
        # GPT-2's trick: scale the projections that write into the residual stream by
        # 1/sqrt(2 * n_layer), so the stream's variance does not grow with depth
        for name, p in self.named_parameters():
            if name.endswith("wo.weight") or name.endswith("down.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        B, T = idx.shape
        if T > self.cfg.block_size:
            raise ValueError(f"sequence of {T} tokens exceeds block_size {self.cfg.block_size}")
        x = self.embed(idx)  # (B, T, C)
        cos, sin = self.rope_cos[:T], self.rope_sin[:T]  # (T, D/2)
        for block in self.blocks:
            x = block(x, cos, sin)
        x = self.norm(x)
        logits = x @ self.embed.weight.T  # (B, T, V): tied embeddings, one matrix fewer to learn
        loss = None
        if targets is not None:
            # targets of -1 are masked (e.g. prompt tokens when only the answer is taught)
            loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)
        return logits, loss

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        *,
        temperature: float = 0.0,
        top_k: int = 0,
        stop: set[int] | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Extend each row of ``idx`` (B, T) by up to ``max_new_tokens``; temperature 0 is greedy.

        No KV cache: a µLM's context is a few hundred tokens, so recomputing it is
        cheap, and the code stays the forward pass above. Rows that produced a
        ``stop`` token keep producing it (the caller cuts there).
        """
        done = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)
        for _ in range(max_new_tokens):
            ctx = idx[:, -self.cfg.block_size :]
            logits = self(ctx)[0][:, -1, :].float()  # (B, V)
            if temperature <= 0:
                nxt = logits.argmax(-1, keepdim=True)  # (B, 1)
            else:
                logits = logits / temperature
                if top_k > 0:
                    kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                nxt = torch.multinomial(F.softmax(logits, -1), 1, generator=generator)  # (B, 1)
            if stop:
                stop_id = next(iter(stop))
                nxt = torch.where(done.unsqueeze(1), torch.full_like(nxt, stop_id), nxt)
                done |= torch.isin(nxt.squeeze(1), torch.tensor(sorted(stop), device=idx.device))
            idx = torch.cat((idx, nxt), dim=1)
            if stop and bool(done.all()):
                break
        return idx
