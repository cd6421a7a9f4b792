"""The denoiser: a transformer decoder over motion frames, conditioned on music and style.

EDGE-style (Tseng et al., CVPR 2023): noisy motion tokens self-attend, cross-attend to encoded
music, and are modulated (FiLM) by the diffusion time and the style label; the network predicts
the clean motion x0. Smaller than EDGE's (width 512, 8 layers) so that it trains and samples on a
laptop CPU; the EDGE-sized configuration is `ModelConfig.edge_sized()`.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn

from ..body.layout import NUM_CHANNELS, WINDOW_FRAMES
from ..music.audio import NUM_MUSIC_FEATURES
from ..music.beat_phase import BEAT_PHASE_CHANNELS, with_beat_phase

KEY_CHANNELS = 2 * NUM_CHANNELS   # keyed values (normalised; 0 where not keyed), then the key mask


@dataclass
class ModelConfig:
    motion_channels: int = NUM_CHANNELS
    music_channels: int = NUM_MUSIC_FEATURES
    width: int = 192
    layers: int = 4
    heads: int = 4
    ffn_mult: int = 2           # 2 rather than the usual 4: halves the cost on CPU, little loss here
    music_layers: int = 2       # depthwise-conv blocks in the music encoder
    dropout: float = 0.1
    max_frames: int = WINDOW_FRAMES
    num_styles: int = 6         # index 0 is "any" (the dropped label)
    key_input: bool = False     # the animator's keys as input (CondMDI-style): KEY_CHANNELS after the music

    @property
    def cond_channels(self) -> int:
        """Per-frame conditioning the network takes: music features, then the key channels."""
        return self.music_channels + (KEY_CHANNELS if self.key_input else 0)

    @property
    def beat_phase(self) -> bool:
        """Whether the music input carries the beat-phase channels (engine.music.beat_phase)."""
        return self.music_channels == NUM_MUSIC_FEATURES + BEAT_PHASE_CHANNELS

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    @classmethod
    def edge_sized(cls, **overrides) -> "ModelConfig":
        """EDGE's network size (width 512, 8 layers, 8 heads, FFN 4x) built from this code."""
        return cls(**{"width": 512, "layers": 8, "heads": 8, "ffn_mult": 4, **overrides})


def music_input(cfg: ModelConfig, music_normalizer, features) -> torch.Tensor:
    """Music features (..., T, 35) (numpy or torch) as generation gives them to a network of
    `cfg`: with the phase of their own beats appended when it takes beat phase, then normalised
    (a CPU tensor). Keys, for a key-aware network, are appended by with_keys."""
    f = features.cpu().numpy() if isinstance(features, torch.Tensor) else np.asarray(features)
    if cfg.beat_phase:
        windows = f.reshape(-1, *f.shape[-2:])
        f = np.stack([with_beat_phase(w) for w in windows]).reshape(*f.shape[:-1], -1)
    return music_normalizer.normalize(torch.as_tensor(f, dtype=torch.float32))


def with_keys(music: torch.Tensor, values: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
    """A key-aware network's conditioning: music (..., T, F) with the key input appended
    (..., T, F + KEY_CHANNELS): the keyed values (normalised motion channels, 0 where not keyed),
    then the mask (..., T, NUM_CHANNELS). Without values and mask: nothing keyed."""
    if values is None:
        return torch.cat([music, music.new_zeros(*music.shape[:-1], KEY_CHANNELS)], dim=-1)
    values = torch.where(mask, values, torch.zeros_like(values)).to(music)
    return torch.cat([music, values, mask.to(music)], dim=-1)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of diffusion times t (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def positional_encoding(length: int, dim: int, device) -> torch.Tensor:
    pos = torch.arange(length, device=device, dtype=torch.float32)
    return timestep_embedding(pos, dim)  # (T, dim)


class MusicEncoder(nn.Module):
    """Per-frame music features -> tokens; local context from depthwise temporal convolutions."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.proj = nn.Linear(cfg.music_channels, cfg.width)
        self.blocks = nn.ModuleList([
            nn.Sequential(nn.LayerNorm(cfg.width), Transpose(),
                          nn.Conv1d(cfg.width, cfg.width, 5, padding=2, groups=cfg.width), Transpose(),
                          nn.Linear(cfg.width, cfg.width), nn.GELU())
            for _ in range(cfg.music_layers)
        ])
        self.null = nn.Parameter(torch.zeros(cfg.width))  # token for "no music" (guidance)

    def forward(self, music: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        h = self.proj(music)                                    # (B, T, d)
        for block in self.blocks:
            h = h + block(h)
        return torch.where(keep[:, None, None], h, self.null.expand_as(h))


class Transpose(nn.Module):
    def forward(self, x):
        return x.transpose(1, 2)


class DecoderLayer(nn.Module):
    """Pre-norm self-attention, cross-attention to music, feed-forward; each FiLM-modulated."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.width
        self.norms = nn.ModuleList([nn.LayerNorm(d, elementwise_affine=False) for _ in range(3)])
        self.self_attn = nn.MultiheadAttention(d, cfg.heads, dropout=cfg.dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(d, cfg.heads, dropout=cfg.dropout, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(d, cfg.ffn_mult * d), nn.GELU(), nn.Linear(cfg.ffn_mult * d, d))
        self.film = nn.Linear(d, 3 * 3 * d)  # (scale, shift, gate) for each of the 3 sub-blocks
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, music, cond):
        mods = self.film(cond)[:, None].chunk(9, dim=-1)        # each (B, 1, d)

        def modulated(i, h):
            return self.norms[i](h) * (1 + mods[3 * i]) + mods[3 * i + 1]

        h = modulated(0, x)
        x = x + (1 + mods[2]) * self.drop(self.self_attn(h, h, h, need_weights=False)[0])
        h = modulated(1, x)
        x = x + (1 + mods[5]) * self.drop(self.cross_attn(h, music, music, need_weights=False)[0])
        h = modulated(2, x)
        return x + (1 + mods[8]) * self.drop(self.ffn(h))


class Denoiser(nn.Module):
    """(x_t, t, cond, style, music_keep) -> predicted clean motion x0, all (B, T, C).

    `cond` (B, T, cfg.cond_channels) is the music features, followed, for a key-aware network
    (cfg.key_input), by the key channels: the keyed values in normalised motion channels (0 where
    nothing is keyed) and the key mask. Keys go to the motion tokens, not to the music encoder,
    so dropping the music for guidance keeps them.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.width
        self.motion_in = nn.Linear(cfg.motion_channels, d)
        if cfg.key_input:
            # Zero at the start: a network fine-tuned into key input begins as it was.
            self.key_in = nn.Linear(KEY_CHANNELS, d)
            nn.init.zeros_(self.key_in.weight)
            nn.init.zeros_(self.key_in.bias)
        self.music = MusicEncoder(cfg)
        self.time_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.style = nn.Embedding(cfg.num_styles, d)
        self.layers = nn.ModuleList([DecoderLayer(cfg) for _ in range(cfg.layers)])
        self.out_norm = nn.LayerNorm(d)
        self.motion_out = nn.Linear(d, cfg.motion_channels)

    def forward(self, x_t, t, music, style, music_keep):
        B, T, _ = x_t.shape
        # The key channels are the last ones, so a network that takes fewer inputs (a guide without
        # the beat phase or the keys) can be given a fuller network's conditioning unchanged.
        keys = music[..., -KEY_CHANNELS:] if self.cfg.key_input else None
        music = music[..., :self.cfg.music_channels]
        pos = positional_encoding(T, self.cfg.width, x_t.device)
        cond = self.time_mlp(timestep_embedding(t, self.cfg.width)) + self.style(style)   # (B, d)
        m = self.music(music, music_keep) + pos                                           # (B, T, d)
        # The frame's own music is added to its token too: beats are local, attention finds context.
        h = self.motion_in(x_t) + pos + m                                                 # (B, T, d)
        if self.cfg.key_input:
            h = h + self.key_in(keys)
        for layer in self.layers:
            h = layer(h, m, cond)
        return self.motion_out(self.out_norm(h))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
