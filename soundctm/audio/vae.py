"""Mel VAE: ``diffusers.AutoencoderKL`` on log-mel "images", with a latent scale factor (Rombach et al. 2022, Sec. 4.3).

A folder is a plain diffusers AutoencoderKL folder (``config.json`` + ``diffusion_pytorch_model.safetensors``) whose
``config.json`` carries one extra block, ``"soundctm"``: mel normalisation, image layout and the mel settings. So
AudioLDM's ``vae/`` folders load unchanged (they have no block: layout time × mel, no normalisation) and our folders
load in plain diffusers too.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from soundctm.audio.mel import MelConfig

LAYOUTS = ("mel_time", "time_mel")  # image [n_mels, frames] (ours) or [frames, n_mels] (AudioLDM)
_EXTRA_KEY = "soundctm"
_WEIGHTS = "diffusion_pytorch_model.safetensors"
EDGE_FRAMES = 2  # decode rebuilds the latent columns up to this many frames past a padded clip (mirror_edge)


@dataclass(frozen=True)
class AudioVAEConfig:
    """Architecture of the AutoencoderKL plus the audio-side settings stored next to it."""

    latent_channels: int = 8
    block_out_channels: tuple[int, ...] = (32, 64, 64)  # len − 1 = number of 2× down-samplings
    layers_per_block: int = 1
    norm_num_groups: int = 16
    mid_block_add_attention: bool = False
    scale_factor: float = 1.0
    mel_mean: float = 0.0  # mel image = (log-mel − mel_mean) / mel_std
    mel_std: float = 1.0
    layout: str = "mel_time"
    frame_multiple: int = 0  # frames are padded to a multiple of this (0: the down-sampling factor)
    mel: MelConfig = field(default_factory=MelConfig)

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        if self.mel_std <= 0 or self.scale_factor <= 0:
            raise ValueError(f"mel_std and scale_factor must be > 0, got {self.mel_std}, {self.scale_factor}")
        if self.frame_multiple < 0 or self.frame_multiple % self.downsample != 0:
            raise ValueError(f"frame_multiple must be 0 or a multiple of {self.downsample}, got {self.frame_multiple}")
        if self.mel.n_mels % self.downsample != 0:
            raise ValueError(f"n_mels={self.mel.n_mels} must be divisible by the down-sampling {self.downsample}")

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.block_out_channels) - 1)

    def autoencoder_kwargs(self) -> dict:
        n = len(self.block_out_channels)
        return dict(
            in_channels=1, out_channels=1, latent_channels=self.latent_channels,
            down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
            block_out_channels=tuple(self.block_out_channels), layers_per_block=self.layers_per_block,
            norm_num_groups=self.norm_num_groups, mid_block_add_attention=self.mid_block_add_attention,
            scaling_factor=self.scale_factor, sample_size=self.mel.n_mels,
        )  # fmt: skip

    def extras(self) -> dict:
        """The audio-side settings saved in the ``soundctm`` block of config.json."""
        keys = ("mel_mean", "mel_std", "layout", "frame_multiple")
        return {**{k: getattr(self, k) for k in keys}, "mel": asdict(self.mel)}


@dataclass
class VAEOutput:
    """One training pass: reconstruction ``[B, n_mels, F]``, per-sample KL ``[B]``, scaled latent ``[B, C, h, w]``."""

    recon: torch.Tensor
    kl: torch.Tensor
    latent: torch.Tensor


class AudioVAE(nn.Module):
    """log-mel ``[B, n_mels, F]`` ⇄ scaled latent ``[B, C, h, w]`` through an AutoencoderKL."""

    def __init__(self, config: AudioVAEConfig | None = None, autoencoder=None):
        super().__init__()
        from diffusers import AutoencoderKL

        self.config = config or AudioVAEConfig()
        self.autoencoder = autoencoder or AutoencoderKL(**self.config.autoencoder_kwargs())

    @property
    def scale_factor(self) -> float:
        return self.config.scale_factor

    def set_scale_factor(self, scale_factor: float) -> None:
        """Replace the latent scale (e.g. 1/std of training latents)."""
        self.config = replace(self.config, scale_factor=float(scale_factor))

    def set_mel_normalisation(self, mean: float, std: float) -> None:
        self.config = replace(self.config, mel_mean=float(mean), mel_std=float(std))

    # --- shapes -------------------------------------------------------------------------------------------------
    def padded_frames(self, n_frames: int) -> int:
        """Frames rounded up to ``frame_multiple`` (default: the down-sampling factor)."""
        f = self.config.frame_multiple or self.config.downsample
        return int(math.ceil(n_frames / f) * f)

    def latent_shape(self, n_frames: int) -> tuple[int, int, int]:
        """(C, h, w) of the latent of a mel with ``n_frames`` frames."""
        c, f = self.config, self.config.downsample
        mel_axis, time_axis = c.mel.n_mels // f, self.padded_frames(n_frames) // f
        return (
            (c.latent_channels, mel_axis, time_axis)
            if c.layout == "mel_time"
            else (c.latent_channels, time_axis, mel_axis)
        )

    # --- mel <-> image ------------------------------------------------------------------------------------------
    def mel_to_image(self, mel: torch.Tensor) -> torch.Tensor:
        """``[B, n_mels, F]`` → normalised, padded image ``[B, 1, H, W]`` (pad value: the silence floor)."""
        c = self.config
        if mel.dim() != 3 or mel.shape[1] != c.mel.n_mels:
            raise ValueError(f"mel must be [B, {c.mel.n_mels}, frames], got shape {tuple(mel.shape)}")
        x = (mel - c.mel_mean) / c.mel_std
        floor = (math.log(c.mel.clamp_min) - c.mel_mean) / c.mel_std
        x = F.pad(x, (0, self.padded_frames(mel.shape[-1]) - mel.shape[-1]), value=floor)
        x = x if c.layout == "mel_time" else x.transpose(1, 2)
        return x.unsqueeze(1).to(self.autoencoder.dtype)

    def image_to_mel(self, image: torch.Tensor, n_frames: int | None = None) -> torch.Tensor:
        """Image ``[B, 1, H, W]`` → de-normalised mel ``[B, n_mels, F]``, cropped to ``n_frames``."""
        c = self.config
        x = image.squeeze(1).float()
        x = x if c.layout == "mel_time" else x.transpose(1, 2)
        x = x * c.mel_std + c.mel_mean
        return x if n_frames is None else x[..., :n_frames]

    # --- encode / decode ----------------------------------------------------------------------------------------
    def posterior(self, mel: torch.Tensor):
        """Diagonal Gaussian q(z | mel) in unscaled latent units."""
        return self.autoencoder.encode(self.mel_to_image(mel)).latent_dist

    def encode(self, mel: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        """mel ``[B, n_mels, F]`` → scale_factor · z, z the posterior mean (or a sample): ``[B, C, h, w]``."""
        dist = self.posterior(mel)
        z = dist.sample(generator) if sample else dist.mean
        return z * self.scale_factor

    def mirror_edge(self, latent: torch.Tensor, n_frames: int) -> torch.Tensor:
        """The latent with its columns from the last one wholly inside the clip to the one holding frame
        ``n_frames + EDGE_FRAMES`` replaced by the mirror image of the columns before them, when ``n_frames`` was
        padded (unchanged otherwise, or when too short). 201 frames padded to 208, 4× down-sampling: columns
        49-50 become 48, 47; 51 is kept.

        ``mel_to_image`` pads a clip to ``padded_frames`` with the silence floor, a sound-to-silence step that the
        VAE never saw (``recipes/train_vae.py`` trains on unpadded crops): the encoder writes it into the columns
        at the clip's end (the bundled VAE: column 49 of 52 has 3.8× the typical energy), latent models learn
        those columns from their caches, and the decoder turns them into a +3-7 dB burst over the last ~50 ms of
        noise followed by a 10-35 dB dip. Later all-padding columns are kept: they are cropped, but the decoder's
        group norms see them, and dropping them shifts the level of the whole clip by ~1.5 dB."""
        f, axis = self.config.downsample, (-1 if self.config.layout == "mel_time" else -2)
        start = n_frames // f - 1
        stop = min((n_frames + EDGE_FRAMES) // f + 1, latent.shape[axis])
        if self.padded_frames(n_frames) == n_frames or start < stop - start or stop <= start:
            return latent
        mirrored = latent.narrow(axis, 2 * start - stop, stop - start).flip(axis)
        after = latent.narrow(axis, stop, latent.shape[axis] - stop)
        return torch.cat([latent.narrow(axis, 0, start), mirrored, after], dim=axis)

    def decode(self, latent: torch.Tensor, n_frames: int | None = None) -> torch.Tensor:
        """Scaled latent ``[B, C, h, w]`` → mel ``[B, n_mels, F]``; with ``n_frames``, the clip's padded edge is
        repaired first (``mirror_edge``) and the mel cropped to ``n_frames``."""
        latent = latent if n_frames is None else self.mirror_edge(latent, n_frames)
        latent = latent.to(self.autoencoder.dtype) / self.scale_factor
        if latent.device.type == "cpu" and not torch.is_grad_enabled():  # inference: channels-last convolutions
            latent = latent.contiguous(memory_format=torch.channels_last)  # decode ≈ 15 % faster on this CPU
        image = self.autoencoder.decode(latent).sample
        return self.image_to_mel(image.contiguous(), n_frames)

    def forward(self, mel: torch.Tensor, sample: bool = True) -> VAEOutput:
        """Reconstruct through a posterior sample; KL(q ‖ N(0, I)) summed over latent dims."""
        dist = self.posterior(mel)
        z = dist.sample() if sample else dist.mean
        recon = self.image_to_mel(self.autoencoder.decode(z).sample, mel.shape[-1])
        return VAEOutput(recon=recon, kl=dist.kl(), latent=z * self.scale_factor)

    # --- folders ------------------------------------------------------------------------------------------------
    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """Write config.json (diffusers config + ``soundctm`` block) and the safetensors weights."""
        from safetensors.torch import save_file

        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        config = dict(self.autoencoder.config)
        config.update(_class_name="AutoencoderKL", scaling_factor=self.scale_factor)
        config[_EXTRA_KEY] = self.config.extras()
        (folder / "config.json").write_text(json.dumps(config, indent=2, default=list) + "\n")
        state = {k: v.detach().contiguous() for k, v in self.autoencoder.state_dict().items()}
        save_file(state, str(folder / _WEIGHTS))
        return folder

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> AudioVAE:
        """Load our folder, an AudioLDM-style diffusers AutoencoderKL folder, or a pipeline folder with ``vae/``."""
        from diffusers import AutoencoderKL

        folder = _vae_folder(Path(path))
        raw = json.loads((folder / "config.json").read_text())
        extras = raw.pop(_EXTRA_KEY, None)
        autoencoder = AutoencoderKL.from_config(raw)
        autoencoder.load_state_dict(_read_weights(folder, autoencoder))
        config = _config_from_diffusers(autoencoder.config, extras)
        return cls(config, autoencoder.eval())


def _vae_folder(folder: Path) -> Path:
    """The folder holding config.json (descending into ``vae/`` of a pipeline folder)."""
    if (folder / "vae" / "config.json").is_file():
        folder = folder / "vae"
    if not (folder / "config.json").is_file():
        raise ValueError(f"path must be a local AutoencoderKL folder with config.json, got {folder}")
    return folder


def _read_weights(folder: Path, autoencoder) -> dict:
    """State dict from safetensors, converting old attention key names through diffusers when needed."""
    from safetensors.torch import load_file

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ValueError(f"no *.safetensors weights in {folder}")
    state = load_file(str(files[0]))
    if set(state) != set(autoencoder.state_dict()):
        from diffusers import AutoencoderKL

        # an older diffusers layout (e.g. attention "query/key/value"): let diffusers convert it
        return AutoencoderKL.from_pretrained(str(folder), local_files_only=True).state_dict()
    return state


def _config_from_diffusers(ae_config, extras: dict | None) -> AudioVAEConfig:
    """AudioVAEConfig from a diffusers config; no ``soundctm`` block means AudioLDM (time × mel, raw log-mel)."""
    extras = extras or {"layout": "time_mel"}
    return AudioVAEConfig(
        latent_channels=int(ae_config.latent_channels),
        block_out_channels=tuple(ae_config.block_out_channels),
        layers_per_block=int(ae_config.layers_per_block),
        norm_num_groups=int(ae_config.norm_num_groups),
        mid_block_add_attention=bool(getattr(ae_config, "mid_block_add_attention", True)),
        scale_factor=float(ae_config.scaling_factor),
        mel_mean=float(extras.get("mel_mean", 0.0)),
        mel_std=float(extras.get("mel_std", 1.0)),
        layout=extras.get("layout", "time_mel"),
        frame_multiple=int(extras.get("frame_multiple", 0)),
        mel=MelConfig(**extras.get("mel", {})),
    )


VAE_PRESETS: dict[str, Callable[[], AudioVAEConfig]] = {
    # 64 mels × 201 frames (2 s) → 8 × 16 × 52: frames padded to 208 so the latent width divides by 4
    "tiny": lambda: AudioVAEConfig(
        latent_channels=8, block_out_channels=(16, 32, 64), layers_per_block=1, norm_num_groups=8, frame_multiple=16
    ),
    "audioldm": lambda: AudioVAEConfig(
        latent_channels=8,
        block_out_channels=(128, 256, 512),
        layers_per_block=2,
        norm_num_groups=32,
        mid_block_add_attention=True,
        layout="time_mel",
    ),  # fmt: skip
}


def build_vae(name: str) -> AudioVAE:
    """Randomly initialised AudioVAE from a preset name (see ``VAE_PRESETS``)."""
    if name not in VAE_PRESETS:
        raise ValueError(f"VAE preset must be one of {sorted(VAE_PRESETS)}, got {name!r}")
    return AudioVAE(VAE_PRESETS[name]())
