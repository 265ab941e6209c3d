"""Text-conditioned latent UNets on ``diffusers.UNet2DConditionModel`` (the class TANGO/AudioLDM teachers use).

- ``TextUNet``: the teacher's raw net ``F(x_in, c_noise, tokens, mask)``, wrapped into a denoiser by
  ``soundctm.core.precond.EDMDenoiser``.
- ``TwoTimeTextUNet``: the CTM student's raw net ``F(x_in, c_noise_t, c_noise_s, tokens, mask, omega)`` = the
  teacher's UNet plus embeddings of the target time s and the guidance scale ω, fed through diffusers'
  ``timestep_cond`` with a zero-initialised projection, so that at initialisation the student equals the teacher.
- ``VPEpsilonDenoiser``: adapts a DDPM ε-prediction UNet (TANGO/AudioLDM, variance preserving) to the EDM
  denoiser contract, so such checkpoints serve as teachers.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import load_file, save_file
from torch import nn

from soundctm.core.utils import append_dims, as_sigma


@dataclass(frozen=True)
class UNetConfig:
    """A compact description of a latent UNet; ``diffusers_kwargs`` builds the UNet2DConditionModel."""

    in_channels: int = 8
    block_out_channels: tuple[int, ...] = (32, 64, 64)
    attention: tuple[bool, ...] = (False, True, True)  # cross-attention at each resolution, top to bottom
    layers_per_block: int = 1
    cross_attention_dim: int = 384
    attention_head_dim: int = 8
    norm_num_groups: int = 8
    noise_scale: float = 1000.0  # diffusers' sinusoidal embedding sees timestep = noise_scale · c_noise
    extra: dict = field(default_factory=dict)  # passed through to UNet2DConditionModel

    def diffusers_kwargs(self) -> dict:
        if len(self.attention) != len(self.block_out_channels):
            raise ValueError("attention needs one flag per entry of block_out_channels")
        down = tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in self.attention)
        up = tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(self.attention))
        return dict(in_channels=self.in_channels, out_channels=self.in_channels, down_block_types=down,
                    up_block_types=up, block_out_channels=tuple(self.block_out_channels),
                    layers_per_block=self.layers_per_block, cross_attention_dim=self.cross_attention_dim,
                    attention_head_dim=self.attention_head_dim, norm_num_groups=self.norm_num_groups,
                    mid_block_type="UNetMidBlock2DCrossAttn", **self.extra)

    @staticmethod
    def from_dict(d: dict) -> UNetConfig:
        d = dict(d)
        for k in ("block_out_channels", "attention"):
            if k in d:
                d[k] = tuple(d[k])
        return UNetConfig(**d)


UNET_PRESETS = {
    "tiny": UNetConfig(),
    "debug": UNetConfig(in_channels=4, block_out_channels=(8, 16), attention=(False, True), cross_attention_dim=16,
                        attention_head_dim=4, norm_num_groups=4),
}


class TextUNet(nn.Module):
    """Raw teacher network ``F(x_in, c_noise, tokens, mask) -> [B, C, H, W]`` around a diffusers UNet."""

    def __init__(self, unet: UNet2DConditionModel, noise_scale: float = 1000.0):
        super().__init__()
        self.unet = unet
        self.noise_scale = noise_scale

    @classmethod
    def from_config(cls, config: UNetConfig) -> TextUNet:
        return cls(UNet2DConditionModel(**config.diffusers_kwargs()), config.noise_scale)

    def forward(self, x_in, c_noise, tokens, mask=None, **_):
        return self.unet(x_in, c_noise * self.noise_scale, encoder_hidden_states=tokens,
                         encoder_attention_mask=mask).sample

    def save_pretrained(self, directory: str | Path) -> Path:
        return save_unet_dir(self, directory, "teacher")

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> TextUNet:
        return _load_kind(directory, cls)


class TwoTimeTextUNet(nn.Module):
    """Raw CTM student network: the teacher UNet with s and ω embeddings added through ``timestep_cond``."""

    def __init__(self, unet: UNet2DConditionModel, noise_scale: float = 1000.0, omega_scale: float = 100.0):
        super().__init__()
        self.unet = unet
        self.noise_scale = noise_scale
        self.omega_scale = omega_scale

    @classmethod
    def from_teacher(cls, teacher: TextUNet, omega_scale: float = 100.0) -> TwoTimeTextUNet:
        """Copy the teacher's weights; the new ``cond_proj`` starts at zero so g(x, t, s) = D_teacher(x, t)."""
        emb = teacher.unet.config.block_out_channels[0]
        unet = UNet2DConditionModel(**{**teacher.unet.config, "time_cond_proj_dim": 2 * emb})
        missing, unexpected = unet.load_state_dict(teacher.unet.state_dict(), strict=False)
        if unexpected or any("cond_proj" not in k for k in missing):
            raise ValueError(f"teacher and student UNets disagree: missing {missing}, unexpected {unexpected}")
        nn.init.zeros_(unet.time_embedding.cond_proj.weight)
        return cls(unet, teacher.noise_scale, omega_scale)

    def forward(self, x_in, c_noise_t, c_noise_s, tokens, mask=None, omega=None, **_):
        omega = torch.ones_like(c_noise_t) if omega is None else as_sigma(omega, x_in)
        cond = torch.cat([self.unet.time_proj(c_noise_s * self.noise_scale),
                          self.unet.time_proj(omega * self.omega_scale)], 1).to(x_in.dtype)
        return self.unet(x_in, c_noise_t * self.noise_scale, encoder_hidden_states=tokens,
                         encoder_attention_mask=mask, timestep_cond=cond).sample

    def save_pretrained(self, directory: str | Path) -> Path:
        return save_unet_dir(self, directory, "student")

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> TwoTimeTextUNet:
        return _load_kind(directory, cls)


def architecture_mismatch(reference: nn.Module, other: nn.Module) -> str | None:
    """None when ``other`` has ``reference``'s tensor names and shapes and the same time embedding (noise_scale,
    omega_scale), so that one's weights load into the other; else a short description of the first difference."""
    ref, oth = reference.state_dict(), other.state_dict()
    if ref.keys() != oth.keys():
        only = sorted(ref.keys() ^ oth.keys())
        return f"{len(only)} tensor name(s) in only one of them, e.g. {only[0]!r}"
    for k, v in ref.items():
        if oth[k].shape != v.shape:
            return f"{k!r} has shape {tuple(oth[k].shape)}, expected {tuple(v.shape)}"
    for attr in ("noise_scale", "omega_scale"):
        if getattr(reference, attr, None) != getattr(other, attr, None):
            return f"it embeds time with {attr} {getattr(other, attr, None)}, expected {getattr(reference, attr, None)}"
    return None


def vp_sigmas(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """EDM noise level of each DDPM timestep: σ_t = √((1 − ᾱ_t)/ᾱ_t)."""
    return ((1 - alphas_cumprod) / alphas_cumprod).sqrt()


class VPEpsilonDenoiser(nn.Module):
    """EDM denoiser from a DDPM ε-prediction UNet: D(x, σ) = x − σ·ε(x/√(1+σ²), t(σ), text).

    x_VE = x_VP·√(1+σ²) relates the two processes (Karras et al. 2022, App. C); t(σ) interpolates the
    DDPM timestep linearly in log σ.
    """

    def __init__(self, unet: UNet2DConditionModel, alphas_cumprod: torch.Tensor):
        super().__init__()
        self.unet = unet
        self.register_buffer("log_sigmas", vp_sigmas(alphas_cumprod.double()).log().float())

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        """Fractional DDPM timestep whose σ_t equals sigma (clamped to the table's range)."""
        ls = self.log_sigmas
        x = sigma.log().clamp(ls[0], ls[-1])
        idx = torch.searchsorted(ls, x).clamp(1, len(ls) - 1)
        lo, hi = ls[idx - 1], ls[idx]
        return (idx - 1) + (x - lo) / (hi - lo)

    def forward(self, x, sigma, tokens, mask=None, **_):
        sigma = as_sigma(sigma, x)
        x_vp = x / append_dims((1 + sigma**2).sqrt(), x.ndim)
        eps = self.unet(x_vp, self.timestep(sigma), encoder_hidden_states=tokens,
                        encoder_attention_mask=mask).sample
        return x - append_dims(sigma, x.ndim) * eps


def ddpm_alphas_cumprod(n: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012,
                        schedule: str = "scaled_linear") -> torch.Tensor:
    """ᾱ_t of a DDPM schedule (the "scaled_linear" default is what Stable Diffusion, AudioLDM and TANGO use)."""
    if schedule == "scaled_linear":
        betas = torch.linspace(beta_start**0.5, beta_end**0.5, n, dtype=torch.float64) ** 2
    elif schedule == "linear":
        betas = torch.linspace(beta_start, beta_end, n, dtype=torch.float64)
    else:
        raise ValueError(f"schedule must be 'scaled_linear' or 'linear', got {schedule!r}")
    return torch.cumprod(1 - betas, 0)


class UNetFeatures:
    """Multi-level features of a frozen UNet (outputs of each down block and the mid block) via hooks. The hooks
    record only inside ``collect``: other forwards of the same UNet (a teacher solve) keep nothing."""

    def __init__(self, unet: UNet2DConditionModel):
        self.feats: list[torch.Tensor] | None = None  # a list only while collect runs
        for block in [*unet.down_blocks, unet.mid_block]:
            block.register_forward_hook(self._hook)

    def _hook(self, module, args, output):
        if self.feats is not None:
            self.feats.append(output[0] if isinstance(output, tuple) else output)

    def collect(self, run) -> list[torch.Tensor]:
        """Run ``run()`` (a forward pass of the hooked UNet) and return the features it produced."""
        self.feats = []
        try:
            run()
            return self.feats
        finally:
            self.feats = None


# ---- save / load: config.json + model.safetensors ----

def save_unet_dir(module: nn.Module, directory: str | Path, kind: str, extra: dict | None = None) -> Path:
    """Write ``config.json`` (diffusers UNet config + our fields) and ``model.safetensors`` (the module's state)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = {"kind": kind, "unet": dict(module.unet.config), "noise_scale": module.noise_scale, **(extra or {})}
    if isinstance(module, TwoTimeTextUNet):
        config["omega_scale"] = module.omega_scale
    (directory / "config.json").write_text(json.dumps(config, indent=2, default=list))
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, directory / "model.safetensors")
    return directory


def load_unet_dir(directory: str | Path) -> tuple[nn.Module, dict]:
    """Rebuild a TextUNet / TwoTimeTextUNet saved by ``save_unet_dir``; returns (module, config)."""
    directory = Path(directory)
    cfg_path, weights = directory / "config.json", directory / "model.safetensors"
    if not cfg_path.is_file() or not weights.is_file():
        raise FileNotFoundError(f"{directory} is not a model directory (needs config.json and model.safetensors)")
    config = json.loads(cfg_path.read_text())
    if config.get("kind") not in ("teacher", "student"):
        raise ValueError(f"{cfg_path}: 'kind' must be 'teacher' or 'student', got {config.get('kind')!r}")
    unet = UNet2DConditionModel(**{k: v for k, v in config["unet"].items() if not k.startswith("_")})
    if config["kind"] == "student":
        module = TwoTimeTextUNet(unet, config["noise_scale"], config.get("omega_scale", 100.0))
    else:
        module = TextUNet(unet, config["noise_scale"])
    module.load_state_dict(load_file(weights))
    return module, config


def unet_config_dict(config: UNetConfig) -> dict:
    return asdict(config)


def _load_kind(directory, cls):
    module, config = load_unet_dir(directory)
    if not isinstance(module, cls):
        raise ValueError(f"{directory} holds a {config['kind']} network, not a {cls.__name__}")
    return module
