"""Gated self- and cross-attention over coarse tokens.

Every attention output (the "message") enters the token through a gated residual
``x + sigmoid(W [x, msg]) * msg`` (:class:`GatedResidual`); ``use_gating=False`` gives the plain
residual ``x + msg`` (ablation). Full softmax attention is used for small token counts and kernelised
linear attention (``elu(x) + 1`` feature map) for large ones (``MatcherConfig.attention``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vmgga.models.config import AttentionKind, MatcherConfig


def full_attention(query: Tensor, key: Tensor, value: Tensor) -> Tensor:
    """Softmax attention; ``(B, h, N, d)``, ``(B, h, M, d)``, ``(B, h, M, d)`` -> ``(B, h, N, d)``."""
    return F.scaled_dot_product_attention(query, key, value)


def linear_attention(query: Tensor, key: Tensor, value: Tensor, eps: float = 1e-6) -> Tensor:
    """Linear attention with the ``elu + 1`` feature map, O(N + M); shapes as :func:`full_attention`."""
    q, k = F.elu(query) + 1.0, F.elu(key) + 1.0
    key_value = torch.einsum("bhmd,bhme->bhde", k, value)  # (B, h, d, d)
    normaliser = torch.einsum("bhnd,bhd->bhn", q, k.sum(dim=2)) + eps  # (B, h, N)
    return torch.einsum("bhnd,bhde->bhne", q, key_value) / normaliser[..., None]


class GatedResidual(nn.Module):
    """``x + sigmoid(W [x, msg] + b) * msg`` (or ``x + msg`` when ``use_gating`` is False)."""

    def __init__(self, dim: int, use_gating: bool = True) -> None:
        super().__init__()
        self.use_gating = use_gating
        self.gate_proj = nn.Linear(2 * dim, dim)

    def gate(self, x: Tensor, message: Tensor) -> Tensor:
        """The per-channel gate in (0, 1); ``(B, N, C)`` each -> ``(B, N, C)``."""
        return torch.sigmoid(self.gate_proj(torch.cat([x, message], dim=-1)))

    def forward(self, x: Tensor, message: Tensor) -> Tensor:
        """``(B, N, C)`` tokens plus ``(B, N, C)`` message -> updated tokens ``(B, N, C)``."""
        if not self.use_gating:
            return x + message
        return x + self.gate(x, message) * message


class AttentionBlock(nn.Module):
    """One attention layer: message = MLP([x, attention(x -> source)]), then a gated residual."""

    def __init__(self, dim: int, heads: int, kind: str, max_full_tokens: int, use_gating: bool) -> None:
        super().__init__()
        self.heads, self.kind, self.max_full_tokens = heads, kind, max_full_tokens
        self.to_q = nn.Linear(dim, dim)
        self.to_kv = nn.Linear(dim, 2 * dim)
        self.merge = nn.Linear(dim, dim)
        self.mlp = nn.Sequential(
            nn.Linear(2 * dim, 2 * dim), nn.LayerNorm(2 * dim), nn.GELU(), nn.Linear(2 * dim, dim)
        )
        self.residual = GatedResidual(dim, use_gating)

    def _split(self, tokens: Tensor) -> Tensor:
        b, n, c = tokens.shape
        return tokens.reshape(b, n, self.heads, c // self.heads).transpose(1, 2)  # (B, h, N, d)

    def _attend(self, x: Tensor, source: Tensor) -> Tensor:
        query = self._split(self.to_q(x))
        key, value = (self._split(t) for t in self.to_kv(source).chunk(2, dim=-1))
        use_full = self.kind == AttentionKind.FULL.value or (
            self.kind == AttentionKind.AUTO.value and max(x.shape[1], source.shape[1]) <= self.max_full_tokens
        )
        out = full_attention(query, key, value) if use_full else linear_attention(query, key, value)
        return self.merge(out.transpose(1, 2).flatten(2))  # (B, N, C)

    def forward(self, x: Tensor, source: Tensor) -> Tensor:
        """Tokens ``x (B, N, C)`` attend to ``source (B, M, C)``; returns ``(B, N, C)``."""
        message = self.mlp(torch.cat([x, self._attend(x, source)], dim=-1))
        return self.residual(x, message)


class GatedTransformer(nn.Module):
    """``attention_layers`` pairs of (self, cross) gated attention blocks over both images' tokens."""

    def __init__(self, config: MatcherConfig) -> None:
        super().__init__()
        args = (config.coarse_dim, config.attention_heads, config.attention, config.max_full_attention_tokens)
        self.self_blocks = nn.ModuleList(
            [AttentionBlock(*args, use_gating=config.use_gating) for _ in range(config.attention_layers)]
        )
        self.cross_blocks = nn.ModuleList(
            [AttentionBlock(*args, use_gating=config.use_gating) for _ in range(config.attention_layers)]
        )

    def forward(self, tokens0: Tensor, tokens1: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, N0, C)``, ``(B, N1, C)`` -> updated tokens of the same shapes."""
        for self_block, cross_block in zip(self.self_blocks, self.cross_blocks, strict=True):
            tokens0, tokens1 = self_block(tokens0, tokens0), self_block(tokens1, tokens1)
            tokens0, tokens1 = cross_block(tokens0, tokens1), cross_block(tokens1, tokens0)
        return tokens0, tokens1
