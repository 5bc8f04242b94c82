"""The ACT network in plain torch, state-dict compatible with LeRobot's ``ACT`` module.

Parameter names match LeRobot's ``model.*`` keys (without the ``model.`` prefix), so a
trained checkpoint loads as is. At inference the latent is zero, so LeRobot's VAE encoder
is never built; its weights are skipped by the loader.

Two forward paths share the weights:

* :meth:`ACT.forward_reference` follows the training-time computation step by step. Tests
  use it as the specification.
* :meth:`ACT.forward` (after :meth:`ACT.prepare`) is the deployed path: everything that does
  not depend on the observation is computed once per image resolution and stored as
  constants — the 1-D and 2-D position embeddings, the latent token, the decoder's first
  self-attention block (its input is all zeros) and that layer's cross-attention queries.
  Exported ONNX graphs therefore contain only input-dependent work.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from act_policy.core.backbone import ResNetBackbone, fold_frozen_batch_norm
from act_policy.core.config import PolicySpec
from act_policy.core.errors import CheckpointError

ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu, "glu": F.glu}


class Attention(nn.Module):
    """Multi-head attention with ``nn.MultiheadAttention``'s parameter names (batch first).

    Written out so that query projections can be precomputed and the exported graph is a
    plain MatMul/Softmax chain.
    """

    def __init__(self, dim: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * dim))
        self.out_proj = nn.Linear(dim, dim)

    def project(self, x: torch.Tensor, which: int) -> torch.Tensor:
        """Apply the q (0), k (1) or v (2) input projection."""
        dim = self.out_proj.in_features
        return F.linear(x, self.in_proj_weight[which * dim:(which + 1) * dim],
                        self.in_proj_bias[which * dim:(which + 1) * dim])

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Attention on already projected (B, L, D) tensors."""
        b, lq, d = q.shape
        h = self.n_heads

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(t.shape[0], t.shape[1], h, d // h).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(q), heads(k), heads(v))
        return self.out_proj(out.transpose(1, 2).reshape(b, lq, d))

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        return self.attend(self.project(query, 0), self.project(key, 1), self.project(value, 2))


class TransformerLayer(nn.Module):
    """What encoder and decoder layers share: self-attention, feed-forward, norm placement."""

    def __init__(self, dim: int, n_heads: int, ff: int, activation: str, pre_norm: bool) -> None:
        super().__init__()
        self.self_attn = Attention(dim, n_heads)
        self.linear1, self.linear2 = nn.Linear(dim, ff), nn.Linear(ff, dim)
        self.activation = ACTIVATIONS[activation]
        self.pre_norm = pre_norm

    def feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.activation(self.linear1(x)))


class EncoderLayer(TransformerLayer):
    def __init__(self, dim: int, n_heads: int, ff: int, activation: str, pre_norm: bool) -> None:
        super().__init__(dim, n_heads, ff, activation, pre_norm)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        if self.pre_norm:
            y = self.norm1(x)
            x = x + self.self_attn(y + pos, y + pos, y)
            return x + self.feed_forward(self.norm2(x))
        x = self.norm1(x + self.self_attn(x + pos, x + pos, x))
        return self.norm2(x + self.feed_forward(x))


class DecoderLayer(TransformerLayer):
    def __init__(self, dim: int, n_heads: int, ff: int, activation: str, pre_norm: bool) -> None:
        super().__init__(dim, n_heads, ff, activation, pre_norm)
        self.multihead_attn = Attention(dim, n_heads)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)

    def self_attention_block(self, x: torch.Tensor, query_pos: torch.Tensor) -> torch.Tensor:
        if self.pre_norm:
            y = self.norm1(x)
            return x + self.self_attn(y + query_pos, y + query_pos, y)
        return self.norm1(x + self.self_attn(x + query_pos, x + query_pos, x))

    def cross_attention_query(self, x: torch.Tensor, query_pos: torch.Tensor) -> torch.Tensor:
        """Projected cross-attention query (what the memory is attended with)."""
        y = self.norm2(x) if self.pre_norm else x
        return self.multihead_attn.project(y + query_pos, 0)

    def finish(self, x: torch.Tensor, q: torch.Tensor, memory: torch.Tensor,
               memory_pos: torch.Tensor) -> torch.Tensor:
        """Cross-attention (given its projected query) and feed-forward."""
        attn = self.multihead_attn
        attended = attn.attend(q, attn.project(memory + memory_pos, 1), attn.project(memory, 2))
        if self.pre_norm:
            x = x + attended
            return x + self.feed_forward(self.norm3(x))
        x = self.norm2(x + attended)
        return self.norm3(x + self.feed_forward(x))

    def forward(self, x: torch.Tensor, memory: torch.Tensor, query_pos: torch.Tensor,
                memory_pos: torch.Tensor) -> torch.Tensor:
        x = self.self_attention_block(x, query_pos)
        return self.finish(x, self.cross_attention_query(x, query_pos), memory, memory_pos)


class Encoder(nn.Module):
    def __init__(self, n_layers: int, dim: int, n_heads: int, ff: int, activation: str,
                 pre_norm: bool) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            EncoderLayer(dim, n_heads, ff, activation, pre_norm) for _ in range(n_layers))
        self.norm = nn.LayerNorm(dim) if pre_norm else nn.Identity()

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, pos)
        return self.norm(x)


class Decoder(nn.Module):
    def __init__(self, n_layers: int, dim: int, n_heads: int, ff: int, activation: str,
                 pre_norm: bool) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            DecoderLayer(dim, n_heads, ff, activation, pre_norm) for _ in range(n_layers))
        self.norm = nn.LayerNorm(dim)


def sine_position_embedding_2d(height: int, width: int, dim: int) -> torch.Tensor:
    """DETR-style 2-D sine embedding as used by ACT, shape (H*W, dim), rows in (y, x) order.

    Each axis gets ``dim/2`` channels: positions 1..N normalised to (0, 2π], divided by
    ``10000^(2⌊i/2⌋/(dim/2))``, sine on even and cosine on odd channels interleaved;
    y channels come first.
    """
    half = dim // 2
    eps, temperature = 1e-6, 10000.0
    ys = torch.arange(1, height + 1, dtype=torch.float32) / (height + eps) * (2 * math.pi)
    xs = torch.arange(1, width + 1, dtype=torch.float32) / (width + eps) * (2 * math.pi)
    freq = temperature ** (2 * (torch.arange(half, dtype=torch.float32) // 2) / half)

    def encode(positions: torch.Tensor) -> torch.Tensor:
        phase = positions[:, None] / freq  # (N, half)
        return torch.stack((phase[:, 0::2].sin(), phase[:, 1::2].cos()), dim=-1).flatten(1)

    ey, ex = encode(ys), encode(xs)
    grid = torch.cat((ey[:, None, :].expand(height, width, half),
                      ex[None, :, :].expand(height, width, half)), dim=-1)
    return grid.reshape(height * width, dim)


class ACT(nn.Module):
    """ACT inference network: normalized observations in, normalized action chunk out."""

    def __init__(self, spec: PolicySpec) -> None:
        super().__init__()
        c = spec.config
        if c.replace_final_stride_with_dilation:  # checkpoints are refused earlier, naming config.json
            raise CheckpointError("config: replace_final_stride_with_dilation=true is not supported")
        self.spec = spec
        dim = c.dim_model
        layer_args = (dim, c.n_heads, c.dim_feedforward, c.feedforward_activation, c.pre_norm)
        if spec.cameras:
            self.backbone = ResNetBackbone(c.vision_backbone)
            self.encoder_img_feat_input_proj = nn.Conv2d(self.backbone.out_channels, dim, 1)
        self.encoder = Encoder(c.n_encoder_layers, *layer_args)
        self.decoder = Decoder(c.n_decoder_layers, *layer_args)
        if spec.state is not None:
            self.encoder_robot_state_input_proj = nn.Linear(spec.state.shape[0], dim)
        if spec.env_state is not None:
            self.encoder_env_state_input_proj = nn.Linear(spec.env_state.shape[0], dim)
        self.encoder_latent_input_proj = nn.Linear(c.latent_dim, dim)
        n_1d = 1 + (spec.state is not None) + (spec.env_state is not None)
        self.encoder_1d_feature_pos_embed = nn.Embedding(n_1d, dim)
        self.decoder_pos_embed = nn.Embedding(c.chunk_size, dim)
        self.action_head = nn.Linear(dim, spec.action_dim)
        self._prepared_for: tuple[tuple[int, int], ...] | None = None

    # ------------------------------------------------------------------ shared pieces
    def state_tokens(self, state: torch.Tensor | None, env_state: torch.Tensor | None) -> list[torch.Tensor]:
        tokens = []
        if state is not None:
            tokens.append(self.encoder_robot_state_input_proj(state))
        if env_state is not None:
            tokens.append(self.encoder_env_state_input_proj(env_state))
        return tokens

    def camera_tokens(self, images: list[torch.Tensor]) -> list[torch.Tensor]:
        """(B, h*w, D) tokens for each camera; images are normalized (B, 3, H, W)."""
        tokens = []
        for image in images:
            features = self.encoder_img_feat_input_proj(self.backbone(image))
            tokens.append(features.flatten(2).transpose(1, 2))
        return tokens

    def feature_map_sizes(self, image_sizes: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """Backbone output (h, w) for each (H, W): conv1 stride 2, maxpool, three stride-2 stages."""
        def down(n: int) -> int:
            n = (n + 2 * 3 - 7) // 2 + 1  # conv1
            n = (n + 2 - 3) // 2 + 1  # maxpool
            for _ in range(3):
                n = (n + 2 - 3) // 2 + 1  # stride-2 3x3 (or 1x1 downsample, same size)
            return n
        return [(down(h), down(w)) for h, w in image_sizes]

    def position_embedding(self, image_sizes: list[tuple[int, int]]) -> torch.Tensor:
        """(1, T, D) positions of all encoder tokens in order: latent, state, env, cameras."""
        dim = self.spec.config.dim_model
        parts = [self.encoder_1d_feature_pos_embed.weight]
        parts += [sine_position_embedding_2d(h, w, dim) for h, w in self.feature_map_sizes(image_sizes)]
        return torch.cat(parts, dim=0)[None]

    # ------------------------------------------------------------------ reference path
    def forward_reference(self, images: list[torch.Tensor], state: torch.Tensor | None = None,
                          env_state: torch.Tensor | None = None) -> torch.Tensor:
        """Step-by-step computation as in training (zero latent); (B, chunk, A)."""
        batch = (images[0] if images else state if state is not None else env_state).shape[0]
        c = self.spec.config
        latent = torch.zeros(batch, 1, c.latent_dim)
        one_d = [self.encoder_latent_input_proj(latent)]
        one_d += [t[:, None] for t in self.state_tokens(state, env_state)]
        tokens = torch.cat(one_d + self.camera_tokens(images), dim=1)
        pos = self.position_embedding([tuple(i.shape[-2:]) for i in images])
        memory = self.encoder(tokens, pos)
        x = torch.zeros(batch, c.chunk_size, c.dim_model)
        query_pos = self.decoder_pos_embed.weight[None]
        for layer in self.decoder.layers:
            x = layer(x, memory, query_pos, pos)
        return self.action_head(self.decoder.norm(x))

    # ------------------------------------------------------------------ deployed path
    @torch.no_grad()
    def prepare(self, image_sizes: list[tuple[int, int]]) -> ACT:
        """Fold batch norms and precompute input-independent constants for these image sizes."""
        if self.spec.cameras:
            fold_frozen_batch_norm(self.backbone)
        c = self.spec.config
        pos = self.position_embedding(image_sizes)
        latent_token = self.encoder_latent_input_proj.bias[None, None]  # zero latent → bias only
        first = self.decoder.layers[0]
        query_pos = self.decoder_pos_embed.weight[None]
        x0 = first.self_attention_block(torch.zeros(1, c.chunk_size, c.dim_model), query_pos)
        self.register_buffer("const_pos", pos.clone(), persistent=False)
        self.register_buffer("const_latent_token", latent_token.clone(), persistent=False)
        self.register_buffer("const_decoder_x0", x0, persistent=False)
        self.register_buffer("const_decoder_q0", first.cross_attention_query(x0, query_pos), persistent=False)
        self._prepared_for = tuple(tuple(s) for s in image_sizes)
        return self

    def forward(self, images: list[torch.Tensor], state: torch.Tensor | None = None,
                env_state: torch.Tensor | None = None) -> torch.Tensor:
        """Deployed forward: (B, chunk, A) normalized actions. Call :meth:`prepare` first."""
        sizes = tuple(tuple(i.shape[-2:]) for i in images)
        if self._prepared_for != sizes:
            raise RuntimeError(f"ACT.prepare() was called for image sizes {self._prepared_for}, got {sizes}")
        return self.head(self.camera_tokens(images), state, env_state)

    def head(self, camera_tokens: list[torch.Tensor], state: torch.Tensor | None = None,
             env_state: torch.Tensor | None = None) -> torch.Tensor:
        """Deployed path after the backbones: (B, h*w, D) tokens per camera → (B, chunk, A).

        Separate so the Hailo hybrid path can run the backbones on the NPU and this on the CPU.
        """
        batch = (camera_tokens[0] if camera_tokens else state if state is not None else env_state).shape[0]
        one_d = [self.const_latent_token.expand(batch, 1, -1)]
        one_d += [t[:, None] for t in self.state_tokens(state, env_state)]
        tokens = torch.cat(one_d + camera_tokens, dim=1)
        memory = self.encoder(tokens, self.const_pos)
        layers = self.decoder.layers
        x = layers[0].finish(self.const_decoder_x0.expand(batch, -1, -1),
                             self.const_decoder_q0.expand(batch, -1, -1), memory, self.const_pos)
        query_pos = self.decoder_pos_embed.weight[None]
        for layer in layers[1:]:
            x = layer(x, memory, query_pos, self.const_pos)
        return self.action_head(self.decoder.norm(x))
