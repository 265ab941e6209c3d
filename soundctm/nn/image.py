"""A small class-conditional UNet for tiny images (8×8 / 16×16 digits) in the preconditioning contracts.

- ``ImageUNet(config)`` with ``two_time=False``: the teacher's raw net ``F(x_in, c_noise, labels=...)``,
  wrapped into a denoiser by ``soundctm.core.precond.EDMDenoiser``.
- ``ImageUNet.two_time_from(teacher)``: the CTM student's raw net ``F(x_in, c_noise_t, c_noise_s, labels=...)``:
  the teacher's weights plus an embedding of s added to the time embedding through a zero-initialised last layer,
  so that at initialisation the student's g(x, t, s) equals the teacher's D(x, t) for every s.

Labels ``[B]`` take values 0..num_classes−1; the extra index ``num_classes`` is the null label (classifier-free
guidance). Saved as ``config.json`` + ``model.safetensors`` (`save_pretrained` / `from_pretrained`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from soundctm.nn.model_dir import load_model_dir, save_model_dir
from soundctm.nn.toy import fourier_features


@dataclass(frozen=True)
class ImageUNetConfig:
    """Architecture of `ImageUNet`; ``sigma_data`` is the EDM σ_data the net is preconditioned with."""

    channels: int = 1
    size: int = 8
    base: int = 32
    mults: tuple[int, ...] = (1, 2)  # channel multiplier per resolution, top to bottom (halving in between)
    emb_dim: int = 128
    n_freqs: int = 16  # Fourier features of each of c_noise_t, c_noise_s
    num_classes: int = 10  # 0 = unconditional
    groups: int = 8
    two_time: bool = False
    sigma_data: float = 0.5

    def __post_init__(self):
        if self.size % 2 ** (len(self.mults) - 1):
            raise ValueError(f"size={self.size} must be divisible by 2^(len(mults)-1)={2 ** (len(self.mults) - 1)}")
        if any(self.base * m % self.groups for m in self.mults):
            raise ValueError(f"base·mults {[self.base * m for m in self.mults]} must be divisible by "
                             f"groups={self.groups}")
        if self.num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {self.num_classes}")

    @staticmethod
    def from_dict(d: dict) -> ImageUNetConfig:
        return ImageUNetConfig(**{**d, "mults": tuple(d.get("mults", (1, 2)))})


class ResBlock(nn.Module):
    """Norm–SiLU–conv, + embedding bias, norm–SiLU–conv, + (1×1) skip: ``[B, c_in, H, W] → [B, c_out, H, W]``."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, groups: int):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(groups, c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2, self.conv2 = nn.GroupNorm(groups, c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x))) + self.emb(emb)[:, :, None, None]
        return self.skip(x) + self.conv2(F.silu(self.norm2(h)))


def embedding_mlp(n_in: int, dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, dim), nn.SiLU(), nn.Linear(dim, dim))


class ImageUNet(nn.Module):
    """``F(x_in [B, C, H, W], c_noise_t [B], c_noise_s [B] | None, labels [B] | None) -> [B, C, H, W]``."""

    def __init__(self, config: ImageUNetConfig = ImageUNetConfig()):
        super().__init__()
        self.config = c = config
        widths = [c.base * m for m in c.mults]
        self.t_emb = embedding_mlp(2 * c.n_freqs, c.emb_dim)
        self.s_emb = embedding_mlp(2 * c.n_freqs, c.emb_dim) if c.two_time else None
        if self.s_emb is not None:
            nn.init.zeros_(self.s_emb[-1].weight)
            nn.init.zeros_(self.s_emb[-1].bias)
        self.label_emb = nn.Embedding(c.num_classes + 1, c.emb_dim) if c.num_classes else None
        self.conv_in = nn.Conv2d(c.channels, widths[0], 3, padding=1)
        self.down = nn.ModuleList(ResBlock(a, b, c.emb_dim, c.groups) for a, b in zip(widths[:1] + widths, widths))
        self.mid = ResBlock(widths[-1], widths[-1], c.emb_dim, c.groups)
        self.up = nn.ModuleList(ResBlock(2 * w, w_out, c.emb_dim, c.groups)
                                for w, w_out in zip(reversed(widths), list(reversed(widths))[1:] + widths[:1]))
        self.norm_out = nn.GroupNorm(c.groups, widths[0])
        self.conv_out = nn.Conv2d(widths[0], c.channels, 3, padding=1)

    def embed(self, c_noise_t: torch.Tensor, c_noise_s: torch.Tensor | None,
              labels: torch.Tensor | None) -> torch.Tensor:
        """e = MLP_t(fourier(c_t)) [+ MLP_s(fourier(c_s))] [+ E[label]]: ``[B, emb_dim]``."""
        c = self.config
        emb = self.t_emb(fourier_features(c_noise_t, c.n_freqs))
        if self.s_emb is not None:
            if c_noise_s is None:
                raise ValueError("a two-time ImageUNet needs c_noise_s")
            emb = emb + self.s_emb(fourier_features(c_noise_s, c.n_freqs))
        if self.label_emb is not None:
            labels = self.null_labels(len(c_noise_t), c_noise_t.device) if labels is None else labels
            emb = emb + self.label_emb(labels.long())
        return emb

    def null_labels(self, batch: int, device=None) -> torch.Tensor:
        """The unconditional label index (``num_classes``) for a batch: ``[batch]``."""
        return torch.full((batch,), self.config.num_classes, dtype=torch.long, device=device)

    def forward(self, x_in: torch.Tensor, c_noise_t: torch.Tensor, c_noise_s: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, **_) -> torch.Tensor:
        emb = F.silu(self.embed(c_noise_t, c_noise_s, labels))
        h, skips = self.conv_in(x_in), []
        for i, block in enumerate(self.down):
            h = block(h if i == 0 else F.avg_pool2d(h, 2), emb)
            skips.append(h)
        h = self.mid(h, emb)
        for i, block in enumerate(self.up):
            h = block(torch.cat([h, skips.pop()], 1), emb)
            if i < len(self.up) - 1:
                h = F.interpolate(h, scale_factor=2, mode="nearest")
        return self.conv_out(F.silu(self.norm_out(h)))

    @classmethod
    def two_time_from(cls, teacher: ImageUNet) -> ImageUNet:
        """A CTM student holding the teacher's weights and a zero-output s-embedding (g(x, t, s) = D(x, t))."""
        student = cls(dataclasses.replace(teacher.config, two_time=True))
        missing, unexpected = student.load_state_dict(teacher.state_dict(), strict=False)
        if unexpected or any(not k.startswith("s_emb.") for k in missing):
            raise ValueError(f"teacher and student disagree: missing {missing}, unexpected {unexpected}")
        return student

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``config.json`` + ``model.safetensors`` (``soundctm.nn.model_dir``)."""
        return save_model_dir(self, directory)

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> ImageUNet:
        """Rebuild a net written by `save_pretrained` (or `Trainer.export`), in eval mode."""
        return load_model_dir(directory, lambda d: cls(ImageUNetConfig.from_dict(d))).eval()
