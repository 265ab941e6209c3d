"""VGGish (Hershey et al. 2017, "CNN Architectures for Large-Scale Audio Classification"): the FAD embedder.

Front-end: 16 kHz mono, 25 ms Hann windows (400 samples) every 10 ms (160), 512-point FFT magnitude, 64 HTK-mel
bands over 125–7500 Hz (triangles linear in mel), log(mel + 0.01), cut into non-overlapping 96-frame patches
(0.96 s). Network: VGG-style 3×3 convs 64 | 128 | 256, 256 | 512, 512 with 2×2 max-pools after each group, then fully
connected 4096 → 4096 → 128 (ReLU after each, as in the released weights). One 128-D embedding per patch.

``load_vggish_port(path)`` reads the state dict of the public PyTorch port (``vggish-*.pth``: keys ``features.<i>``,
``embeddings.<i>``) and renames it onto this module; the PCA/quantisation post-processing is not applied (FAD uses
the raw embeddings).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class VGGishConfig:
    """Front-end and network sizes; defaults are the released model's."""

    sample_rate: int = 16000
    win_length: int = 400
    hop_length: int = 160
    n_fft: int = 512
    n_mels: int = 64
    fmin: float = 125.0
    fmax: float = 7500.0
    log_offset: float = 0.01
    patch_frames: int = 96
    conv_groups: tuple[tuple[int, ...], ...] = ((64,), (128,), (256, 256), (512, 512))
    fc_dims: tuple[int, ...] = (4096, 4096)
    embedding_dim: int = 128


def hz_to_mel_htk(f: torch.Tensor) -> torch.Tensor:
    """HTK mel scale m = 1127 ln(1 + f / 700)."""
    return 1127.0 * torch.log1p(f / 700.0)


def vggish_mel_matrix(config: VGGishConfig) -> torch.Tensor:
    """Mel weights ``[n_fft // 2 + 1, n_mels]``: triangles linear in HTK mel between equally spaced edges; DC = 0."""
    n_bins = config.n_fft // 2 + 1
    bin_mel = hz_to_mel_htk(torch.linspace(0.0, config.sample_rate / 2, n_bins, dtype=torch.float64))
    edges = torch.linspace(*hz_to_mel_htk(torch.tensor([config.fmin, config.fmax], dtype=torch.float64)),
                           config.n_mels + 2, dtype=torch.float64)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bin_mel[:, None] - lower) / (center - lower)
    falling = (upper - bin_mel[:, None]) / (upper - center)
    weights = torch.clamp(torch.minimum(rising, falling), min=0.0)
    weights[0] = 0.0
    return weights.float()


def frame_signal(wave: torch.Tensor, frame: int, hop: int) -> torch.Tensor:
    """Frames without padding: ``[B, T]`` → ``[B, 1 + (T − frame) // hop, frame]``."""
    return wave.unfold(-1, frame, hop)


def vggish_log_mel(wave: torch.Tensor, config: VGGishConfig, mel_matrix: torch.Tensor) -> torch.Tensor:
    """log(|STFT| · M + offset) of ``[B, T]`` at 16 kHz → ``[B, frames, n_mels]``."""
    window = torch.hann_window(config.win_length, periodic=True, dtype=wave.dtype, device=wave.device)
    frames = frame_signal(wave, config.win_length, config.hop_length) * window
    magnitude = torch.fft.rfft(frames, n=config.n_fft).abs()
    return torch.log(magnitude @ mel_matrix + config.log_offset)


def min_samples(config: VGGishConfig) -> int:
    """Fewest samples giving one full patch: (patch_frames − 1) · hop + win."""
    return (config.patch_frames - 1) * config.hop_length + config.win_length


def vggish_patches(wave: torch.Tensor, config: VGGishConfig, mel_matrix: torch.Tensor) -> torch.Tensor:
    """Non-overlapping log-mel patches ``[B, P, patch_frames, n_mels]`` (clips shorter than one patch zero-padded)."""
    if wave.shape[-1] < min_samples(config):
        wave = F.pad(wave, (0, min_samples(config) - wave.shape[-1]))
    log_mel = vggish_log_mel(wave, config, mel_matrix)
    return log_mel.unfold(1, config.patch_frames, config.patch_frames).transpose(-1, -2)


def conv_output_size(config: VGGishConfig) -> tuple[int, int]:
    """(height, width) of the last feature map: each pool halves (floor) the patch_frames × n_mels input."""
    pools = len(config.conv_groups)
    return config.patch_frames // 2**pools, config.n_mels // 2**pools


class VGGish(nn.Module):
    """VGGish network: patches ``[B, 1, patch_frames, n_mels]`` → embeddings ``[B, embedding_dim]``."""

    def __init__(self, config: VGGishConfig = VGGishConfig()):
        super().__init__()
        self.config = config
        self.convs = nn.ModuleList()
        in_ch = 1
        for group in config.conv_groups:
            self.convs.append(nn.ModuleList(nn.Conv2d(c_in, c, 3, padding=1)
                                            for c_in, c in zip((in_ch, *group[:-1]), group)))
            in_ch = group[-1]
        h, w = conv_output_size(config)
        dims = (h * w * in_ch, *config.fc_dims, config.embedding_dim)
        self.fcs = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.register_buffer("mel_matrix", vggish_mel_matrix(config), persistent=False)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """Embed ``[B, 1, H, W]`` log-mel patches; features flattened in (H, W, C) order as in the TF original."""
        x = patches
        for group in self.convs:
            for conv in group:
                x = F.relu(conv(x))
            x = F.max_pool2d(x, 2)
        x = x.permute(0, 2, 3, 1).flatten(1)
        for fc in self.fcs:
            x = F.relu(fc(x))
        return x

    def embed_frames(self, wave: torch.Tensor) -> torch.Tensor:
        """Per-patch embeddings of 16 kHz waves ``[B, T]`` → ``[B, P, embedding_dim]`` (P = 0.96 s patches)."""
        patches = vggish_patches(wave, self.config, self.mel_matrix)
        b, p = patches.shape[:2]
        return self(patches.reshape(b * p, 1, *patches.shape[2:])).reshape(b, p, -1)


def port_key_map(config: VGGishConfig) -> dict[str, str]:
    """Our parameter prefixes → the PyTorch port's (``features.<i>`` counts ReLU/pool slots, ``embeddings.<2j>``)."""
    mapping, index = {}, 0
    for g, group in enumerate(config.conv_groups):
        for c in range(len(group)):
            mapping[f"convs.{g}.{c}"] = f"features.{index}"
            index += 2  # conv, relu
        index += 1  # max-pool
    for j in range(len(config.fc_dims) + 1):
        mapping[f"fcs.{j}"] = f"embeddings.{2 * j}"
    return mapping


def to_port_state_dict(model: VGGish) -> dict[str, torch.Tensor]:
    """Our state dict renamed to the PyTorch port's layout (for round-trip tests and export)."""
    mapping = port_key_map(model.config)
    return {mapping[k.rsplit(".", 1)[0]] + "." + k.rsplit(".", 1)[1]: v for k, v in model.state_dict().items()}


def config_from_port_state_dict(state: dict[str, torch.Tensor]) -> VGGishConfig:
    """Infer conv group widths and fc sizes from a port state dict (max-pool slots split the groups)."""
    convs = sorted((int(k.split(".")[1]), v.shape[0]) for k, v in state.items()
                   if k.startswith("features.") and k.endswith(".weight"))
    groups, current, last = [], [], None
    for index, width in convs:
        if last is not None and index - last == 3:  # conv, relu, pool, conv: a new group
            groups.append(tuple(current))
            current = []
        current.append(width)
        last = index
    groups.append(tuple(current))
    fcs = sorted((int(k.split(".")[1]), v.shape[0]) for k, v in state.items()
                 if k.startswith("embeddings.") and k.endswith(".weight"))
    widths = [w for _, w in fcs]
    return VGGishConfig(conv_groups=tuple(groups), fc_dims=tuple(widths[:-1]), embedding_dim=widths[-1])


def load_vggish_port(path: str | os.PathLike) -> VGGish:
    """Load the public PyTorch port's ``vggish-*.pth`` state dict (``weights_only=True``) into :class:`VGGish`."""
    if not os.path.isfile(path):
        raise ValueError(f"path must be an existing VGGish state-dict file (.pth), got {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if k.startswith(("features.", "embeddings."))}
    if not state:
        raise ValueError(f"{path} holds no 'features.*'/'embeddings.*' tensors: not a VGGish port state dict")
    model = VGGish(config_from_port_state_dict(state))
    inverse = {v: k for k, v in port_key_map(model.config).items()}
    model.load_state_dict({inverse[k.rsplit(".", 1)[0]] + "." + k.rsplit(".", 1)[1]: v for k, v in state.items()})
    return model.eval()

