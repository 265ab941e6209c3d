import json
import math

import pytest
import torch

from soundctm.audio.mel import MelConfig
from soundctm.audio.vae import VAE_PRESETS, AudioVAE, AudioVAEConfig, build_vae

SMALL = dict(latent_channels=4, block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4)


def _small_vae(**overrides) -> AudioVAE:
    torch.manual_seed(0)
    return AudioVAE(AudioVAEConfig(**{**SMALL, **overrides})).eval()


def test_round_trip_shapes_and_padding():
    vae = _small_vae(frame_multiple=8)
    mel = torch.randn(2, 64, 45)
    latent = vae.encode(mel)
    assert latent.shape == (2, *vae.latent_shape(45)) == (2, 4, 32, 24)  # 45 frames padded to 48, halved
    assert vae.decode(latent, n_frames=45).shape == (2, 64, 45)
    assert vae.decode(latent).shape == (2, 64, 48)


def test_tiny_preset_latent_of_two_seconds():
    vae = build_vae("tiny")
    n_frames = MelConfig().n_frames(32000)
    assert n_frames == 201
    assert vae.latent_shape(n_frames) == (8, 16, 52)


def test_padding_uses_silence_floor_and_normalisation_inverts():
    vae = _small_vae(mel_mean=-5.0, mel_std=2.5)
    mel = torch.randn(1, 64, 7)
    image = vae.mel_to_image(mel)
    assert image.shape == (1, 1, 64, 8)
    assert torch.allclose(image[0, 0, :, :7], (mel[0] + 5.0) / 2.5)
    assert torch.allclose(image[0, 0, :, 7], torch.full((64,), (math.log(1e-5) + 5.0) / 2.5))
    assert torch.allclose(vae.image_to_mel(image, 7), mel, atol=1e-6)


def test_scale_factor_multiplies_latent_and_cancels_in_decode():
    vae = _small_vae()
    mel = torch.randn(1, 64, 16)
    with torch.no_grad():
        z1, recon1 = vae.encode(mel), vae.decode(vae.encode(mel))
        vae.set_scale_factor(0.25)
        z2, recon2 = vae.encode(mel), vae.decode(vae.encode(mel))
    assert torch.allclose(z2, 0.25 * z1, atol=1e-6)
    assert torch.allclose(recon1, recon2, atol=1e-5)


def test_sample_option_is_random_and_mean_is_default():
    vae = _small_vae()
    mel = torch.randn(1, 64, 16)
    with torch.no_grad():
        mean = vae.encode(mel)
        a = vae.encode(mel, sample=True, generator=torch.Generator().manual_seed(1))
        b = vae.encode(mel, sample=True, generator=torch.Generator().manual_seed(1))
        std = vae.posterior(mel).std
    assert torch.equal(a, b) and not torch.allclose(a, mean)
    assert torch.allclose(mean, vae.posterior(mel).mean)
    assert ((a - mean).abs() <= 6 * std).all()


def test_forward_kl_is_nonnegative_per_sample():
    out = _small_vae()(torch.randn(3, 64, 16))
    assert out.kl.shape == (3,) and (out.kl >= 0).all()
    assert out.recon.shape == (3, 64, 16)


def test_save_load_identity(tmp_path):
    vae = _small_vae(scale_factor=0.7, mel_mean=-4.0, mel_std=3.0, frame_multiple=4)
    mel = torch.randn(2, 64, 30)
    vae.save_pretrained(tmp_path / "vae")
    config = json.loads((tmp_path / "vae" / "config.json").read_text())
    assert config["scaling_factor"] == 0.7 and config["soundctm"]["mel_std"] == 3.0
    loaded = AudioVAE.from_pretrained(tmp_path / "vae")
    assert loaded.config == vae.config
    with torch.no_grad():
        assert torch.equal(loaded.encode(mel), vae.encode(mel))
        assert torch.equal(loaded.decode(vae.encode(mel), 30), vae.decode(vae.encode(mel), 30))


def test_loads_audioldm_style_diffusers_folder(tmp_path):
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    ae = AutoencoderKL(
        in_channels=1, out_channels=1, latent_channels=8, block_out_channels=(8, 16, 16), layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        norm_num_groups=4, scaling_factor=0.9227914, sample_size=64,
    ).eval()  # fmt: skip
    ae.save_pretrained(tmp_path / "vae")  # a pipeline folder: <root>/vae/
    vae = AudioVAE.from_pretrained(tmp_path)
    assert vae.config.layout == "time_mel" and vae.scale_factor == pytest.approx(0.9227914)
    mel = torch.randn(2, 64, 32)  # AudioLDM images are [B, 1, frames, n_mels]
    with torch.no_grad():
        latent = vae.encode(mel)
        ref_latent = ae.encode(mel.transpose(1, 2)[:, None]).latent_dist.mean * 0.9227914
        assert latent.shape == (2, 8, 8, 16)
        assert torch.equal(latent, ref_latent)
        ref_mel = ae.decode(latent / 0.9227914).sample[:, 0].transpose(1, 2)
        assert torch.equal(vae.decode(latent), ref_mel)


def test_presets_and_bad_inputs():
    assert set(VAE_PRESETS) >= {"tiny"}
    with pytest.raises(ValueError, match="VAE preset"):
        build_vae("huge")
    with pytest.raises(ValueError, match="layout"):
        AudioVAEConfig(layout="sideways")
    with pytest.raises(ValueError, match="frame_multiple"):
        AudioVAEConfig(frame_multiple=6)
    with pytest.raises(ValueError, match="mel must be"):
        _small_vae().encode(torch.zeros(1, 80, 16))
    with pytest.raises(ValueError, match="config.json"):
        AudioVAE.from_pretrained("/nonexistent/folder")


def _recipe():
    from recipes import train_vae

    return train_vae


def test_recipe_random_crops_are_contiguous_windows():
    recipe = _recipe()
    mels = torch.arange(3 * 2 * 20, dtype=torch.float32).reshape(3, 2, 20)
    crops = recipe.random_crops(mels, 5, torch.Generator().manual_seed(0))
    assert crops.shape == (3, 2, 5)
    starts = crops[:, 0, 0] - mels[:, 0, 0]
    for b in range(3):
        s = int(starts[b])
        assert 0 <= s <= 15 and torch.equal(crops[b], mels[b, :, s : s + 5])


def test_recipe_latent_scale_gives_unit_std_and_cli_errors(capsys):
    recipe = _recipe()
    vae = _small_vae()
    mels = torch.randn(4, 64, 16)
    vae.set_scale_factor(recipe.latent_scale(vae, mels))
    with torch.no_grad():
        assert vae.encode(mels).std().item() == pytest.approx(1.0, rel=1e-4)
    assert recipe.main(["--set", "data.n_train=oops"]) == 2
    assert "train_vae:" in capsys.readouterr().err


def test_recipe_loss_helpers():
    recipe = _recipe()
    mel = torch.full((1, 4, 2), math.log(1e-5))
    mel[0, 1, :] = 0.0  # loudest bin
    mel[0, 2, :] = -math.log(10) * 25 / 20  # 25 dB below: inside a 30 dB range
    assert recipe.loud_mask(mel, 30.0)[0, :, 0].tolist() == [0.0, 1.0, 1.0, 0.0]
    # mel-axis differences ignore a constant offset but see a smeared peak
    assert recipe.mel_axis_l1(mel + 3.0, mel) == 0.0
    smeared = torch.nn.functional.avg_pool1d(mel.transpose(1, 2), 3, 1, 1, count_include_pad=False).transpose(1, 2)
    assert recipe.mel_axis_l1(smeared, mel) > 0.5


def test_bundled_synthcaps_tiny_vae_reconstructs_heldout_clips():
    from pathlib import Path

    from soundctm.audio.mel import MelSpectrogram
    from soundctm.data.synthcaps import SynthCaps

    folder = Path(__file__).resolve().parents[1] / "soundctm" / "pretrained" / "synthcaps-tiny" / "vae"
    vae = AudioVAE.from_pretrained(folder)
    data = SynthCaps(3, seed=123, split="heldout")
    mel = MelSpectrogram()(torch.stack([torch.from_numpy(data[i][0]) for i in range(3)]))
    with torch.no_grad():
        latent = vae.encode(mel)
        recon = vae.decode(latent, mel.shape[-1])
    assert latent.shape == (3, 8, 16, 52)
    assert 0.3 < latent.std().item() < 3.0  # scale factor ≈ 1/std of training latents
    assert (recon - mel).abs().mean().item() < 0.3  # ln-mel units; the input spans ≈ 12
