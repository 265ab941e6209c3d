from dataclasses import replace

import numpy as np
import pytest
import torch

from soundctm.audio.io import resample
from soundctm.metrics.embedders import (
    EMBEDDERS,
    ClassifierEmbedder,
    Embedder,
    build_embedder,
    register_embedder,
)
from soundctm.metrics.panns import CNN14_16K, Cnn14, Cnn14Config, load_cnn14, log_mel_db, to_checkpoint
from soundctm.metrics.scores import clap_score_of_audio, kl_divergence
from soundctm.metrics.vggish import (
    VGGish,
    VGGishConfig,
    load_vggish_port,
    to_port_state_dict,
    vggish_log_mel,
    vggish_mel_matrix,
    vggish_patches,
)

TINY_VGGISH = VGGishConfig(conv_groups=((4,), (8,), (8, 8), (16, 16)), fc_dims=(32, 32), embedding_dim=12)
TINY_CNN14 = Cnn14Config(channels=(4, 8, 8, 16, 16, 24), num_classes=7)
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "loud", "beep", "rain", "falling", "dog", "barks"]


def noise(n, seconds, sr, seed=0):
    return (0.1 * np.random.default_rng(seed).standard_normal((n, int(seconds * sr)))).astype(np.float32)


def tone(freq, seconds, sr):
    t = np.arange(int(seconds * sr)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def randomise_batchnorm(model):
    """Non-trivial running statistics, so a lost BN buffer would change outputs."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    return model.eval()


def save_tiny_vggish(path):
    model = VGGish(TINY_VGGISH).eval()
    torch.save(to_port_state_dict(model), path)
    return model


def save_tiny_cnn14(path):
    model = randomise_batchnorm(Cnn14(TINY_CNN14))
    checkpoint = to_checkpoint(model)
    checkpoint["model"]["spectrogram_extractor.stft.conv_real.weight"] = torch.zeros(513, 1, 1024)
    checkpoint["iteration"] = 660000
    torch.save(checkpoint, path)
    return model


# --- VGGish ------------------------------------------------------------------------------------------------------

def test_vggish_mel_matrix_is_triangular_in_htk_mel():
    cfg = VGGishConfig()
    m = vggish_mel_matrix(cfg)
    assert m.shape == (257, 64) and torch.all(m[0] == 0) and m.max() <= 1.0
    freqs = torch.linspace(0, 8000, 257, dtype=torch.float64)
    mel = 1127 * torch.log1p(freqs / 700)
    edges = torch.linspace(1127 * np.log1p(125 / 700), 1127 * np.log1p(7500 / 700), 66, dtype=torch.float64)
    for band in (0, 31, 63):
        support = m[:, band] > 0
        assert torch.all(mel[support] > edges[band]) and torch.all(mel[support] < edges[band + 2])
        peak = int(torch.argmax(m[:, band]))
        assert abs(mel[peak] - edges[band + 1]) <= (mel[peak + 1] - mel[peak - 1])  # peak next to the centre


def test_vggish_log_mel_matches_numpy_reference_and_patch_count():
    cfg = VGGishConfig()
    wave = noise(1, 2.0, 16000)[0]
    n_frames = 1 + (len(wave) - 400) // 160
    frames = np.stack([wave[i * 160:i * 160 + 400] for i in range(n_frames)])
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 400)  # periodic Hann
    mag = np.abs(np.fft.rfft(frames * window, n=512))
    ref = np.log(mag @ vggish_mel_matrix(cfg).double().numpy() + 0.01)
    ours = vggish_log_mel(torch.from_numpy(wave)[None].double(), cfg, vggish_mel_matrix(cfg).double())
    np.testing.assert_allclose(ours[0].numpy(), ref, atol=1e-9)
    patches = vggish_patches(torch.from_numpy(noise(2, 3.0, 16000)), cfg, vggish_mel_matrix(cfg))
    assert patches.shape == (2, 3, 96, 64)  # 298 frames → 3 full 0.96 s patches
    assert vggish_patches(torch.zeros(1, 8000), cfg, vggish_mel_matrix(cfg)).shape == (1, 1, 96, 64)


def test_vggish_full_size_shapes_and_port_key_names(tmp_path):
    model = VGGish().eval()
    keys = {k.rsplit(".", 1)[0] for k in to_port_state_dict(model)}
    # The PyTorch port indexes its nn.Sequential slots: conv/relu/pool for features, linear/relu for embeddings.
    assert keys == {f"features.{i}" for i in (0, 3, 6, 8, 11, 13)} | {f"embeddings.{i}" for i in (0, 2, 4)}
    assert model.fcs[0].in_features == 512 * 6 * 4
    with torch.no_grad():
        emb = model.embed_frames(torch.from_numpy(noise(2, 1.0, 16000)))
    assert emb.shape == (2, 1, 128) and torch.all(emb >= 0)


def test_vggish_port_round_trip_gives_identical_embeddings(tmp_path):
    model = save_tiny_vggish(tmp_path / "vggish.pth")
    loaded = load_vggish_port(tmp_path / "vggish.pth")
    assert loaded.config == TINY_VGGISH
    wave = torch.from_numpy(noise(2, 2.0, 16000))
    with torch.no_grad():
        assert torch.equal(loaded.embed_frames(wave), model.embed_frames(wave))
    emb = build_embedder("vggish", tmp_path / "vggish.pth")
    assert (emb.sample_rate, emb.mode, emb.dim) == (16000, "frame", 12)
    frames = emb.embed_frames(noise(2, 2.0, 16000), 16000)
    np.testing.assert_allclose(emb.embed(noise(2, 2.0, 16000), 16000), frames.mean(1), atol=1e-6)


def test_vggish_loader_rejects_other_files(tmp_path):
    torch.save({"foo": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="not a VGGish"):
        load_vggish_port(tmp_path / "other.pth")
    with pytest.raises(ValueError, match="path must be an existing"):
        load_vggish_port(tmp_path / "missing.pth")


# --- PANNs Cnn14 -------------------------------------------------------------------------------------------------

def test_cnn14_log_mel_matches_librosa_reference():
    import librosa

    cfg = Cnn14Config()
    wave = noise(1, 0.5, 32000)[0]
    power = librosa.feature.melspectrogram(y=wave.astype(np.float64), sr=32000, n_fft=1024, hop_length=320,
                                           n_mels=64, fmin=50, fmax=14000, center=True, pad_mode="reflect")
    ref = 10 * np.log10(np.maximum(power, 1e-10)).T
    model = Cnn14(cfg)
    ours = log_mel_db(torch.from_numpy(wave)[None].double(), cfg, model.mel_basis.double())[0].numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-6)


def test_cnn14_log_mel_of_a_tone_peaks_in_its_band():
    cfg = Cnn14Config()
    model = Cnn14(cfg)
    freqs = librosa_mel_centres(cfg)
    mel = log_mel_db(torch.from_numpy(tone(1000.0, 0.5, 32000))[None], cfg, model.mel_basis)[0]
    assert abs(freqs[int(mel.mean(0).argmax())] - 1000.0) < 100.0


def librosa_mel_centres(cfg):
    import librosa

    return librosa.mel_frequencies(n_mels=cfg.n_mels + 2, fmin=cfg.fmin, fmax=cfg.fmax)[1:-1]


def test_cnn14_full_size_shapes():
    model = Cnn14().eval()
    with torch.no_grad():
        out = model(torch.from_numpy(noise(2, 0.5, 32000)))
    assert out.embedding.shape == (2, 2048) and out.logits.shape == (2, 527)
    assert torch.all(out.embedding >= 0)  # ReLU after fc1
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(80.7e6, rel=0.01)  # Kong et al.: 80.8M


def test_cnn14_checkpoint_round_trip_gives_identical_outputs(tmp_path):
    model = save_tiny_cnn14(tmp_path / "Cnn14_mAP=0.431.pth")
    loaded = load_cnn14(tmp_path / "Cnn14_mAP=0.431.pth")
    assert loaded.config == TINY_CNN14
    wave = torch.from_numpy(noise(2, 0.4, 32000))
    with torch.no_grad():
        a, b = model(wave), loaded(wave)
    assert torch.equal(a.embedding, b.embedding) and torch.equal(a.logits, b.logits)
    emb = build_embedder("panns", tmp_path / "Cnn14_mAP=0.431.pth", batch_size=1)
    assert isinstance(emb, ClassifierEmbedder) and emb.multi_label
    assert (emb.sample_rate, emb.mode, emb.dim, emb.num_classes) == (32000, "clip", 24, 7)
    out = emb.embed_and_classify(wave.numpy(), 32000)
    np.testing.assert_allclose(out.embeddings, a.embedding.numpy(), atol=1e-5)  # batch_size 1 vs 2: same values
    np.testing.assert_allclose(emb.classify(wave.numpy(), 32000), a.logits.numpy(), atol=1e-5)


def test_cnn14_16k_checkpoint_is_recognised_by_its_mel_filters(tmp_path):
    model = randomise_batchnorm(Cnn14(replace(CNN14_16K, channels=TINY_CNN14.channels, num_classes=3)))
    torch.save(to_checkpoint(model), tmp_path / "Cnn14_16k.pth")
    emb = build_embedder("panns", tmp_path / "Cnn14_16k.pth")
    assert emb.sample_rate == 16000 and emb.model.config == model.config
    clips = noise(2, 0.5, 16000)
    with torch.no_grad():
        ref = model(torch.from_numpy(clips))
    np.testing.assert_allclose(emb.classify(clips, 16000), ref.logits.numpy(), atol=1e-5)


def test_panns_kl_of_a_clip_with_itself_is_zero_and_differs_between_clips(tmp_path):
    save_tiny_cnn14(tmp_path / "cnn14.pth")
    emb = build_embedder("panns", tmp_path / "cnn14.pth")
    clips = noise(2, 0.4, 32000)
    logits = emb.classify(clips, 32000)
    same = kl_divergence(logits, logits, kind="sigmoid", from_logits=True)
    assert same.kl_ref_to_gen == pytest.approx(0.0, abs=1e-9)
    swapped = kl_divergence(logits, logits[::-1], kind="bernoulli", from_logits=True)
    assert swapped.kl_ref_to_gen > 0


# --- shared interface --------------------------------------------------------------------------------------------

def test_embed_resamples_to_the_embedder_rate(tmp_path):
    save_tiny_vggish(tmp_path / "vggish.pth")
    emb = build_embedder("vggish", tmp_path / "vggish.pth")
    clips = noise(2, 2.0, 16000, seed=3)
    at_48k = resample(clips.T, 16000, 48000).T
    direct, via_48k = emb.embed(clips, 16000), emb.embed(at_48k, 48000)
    assert direct.shape == via_48k.shape == (2, 12)
    np.testing.assert_allclose(via_48k, direct, rtol=0.02, atol=1e-3 * np.abs(direct).max())
    assert np.array_equal(emb.embed(torch.from_numpy(clips), 16000), direct)


def test_embed_rejects_bad_input(tmp_path):
    save_tiny_vggish(tmp_path / "vggish.pth")
    emb = build_embedder("vggish", tmp_path / "vggish.pth")
    with pytest.raises(ValueError, match="waveforms must be"):
        emb.embed(np.zeros(16000), 16000)
    with pytest.raises(ValueError, match="sample_rate must be"):
        emb.embed(np.zeros((1, 16000)), 0)
    with pytest.raises(ValueError, match="NaN"):
        emb.embed(np.full((1, 16000), np.nan), 16000)


def test_registry_names_paths_and_extension(tmp_path):
    assert {"clap", "vggish", "panns", "synthcaps"} <= set(EMBEDDERS)
    # the bundled SynthCaps classifier is reachable by name without importing its module first
    synth = build_embedder("synthcaps")
    assert synth.embed(np.zeros((1, 16000), np.float32), 16000).shape[0] == 1
    with pytest.raises(ValueError, match="name must be one of"):
        build_embedder("openl3")
    with pytest.raises(ValueError, match="needs path"):
        build_embedder("panns")
    with pytest.raises(ValueError, match="existing local folder"):
        build_embedder("clap", tmp_path / "missing")

    class Energy(Embedder):
        def embed_batch(self, wave):
            return wave.pow(2).mean(dim=1, keepdim=True)

    register_embedder("energy", lambda path, **kw: Energy(torch.nn.Identity(), 8000, "clip", 1, **kw))
    try:
        with pytest.raises(ValueError, match="already registered"):
            register_embedder("energy", lambda path, **kw: None)
        out = build_embedder("energy").embed(np.ones((3, 1600), np.float32) * 0.5, 8000)
        np.testing.assert_allclose(out, 0.25, rtol=1e-6)
    finally:
        EMBEDDERS.pop("energy")


# --- CLAP --------------------------------------------------------------------------------------------------------

def save_tiny_clap(folder):
    from transformers import BertTokenizer, ClapConfig, ClapFeatureExtractor, ClapModel

    text = dict(vocab_size=len(WORDS), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                intermediate_size=32, max_position_embeddings=40, pad_token_id=0)
    audio = dict(depths=[1, 1], num_attention_heads=[1, 1], patch_embeds_hidden_size=8, hidden_size=16,
                 num_mel_bins=16, spec_size=32, window_size=4, patch_size=4)
    model = ClapModel(ClapConfig(text_config=text, audio_config=audio, projection_dim=8)).eval()
    model.save_pretrained(folder)
    ClapFeatureExtractor(feature_size=16, sampling_rate=16000, hop_length=320, fft_window_size=512, max_length_s=1,
                         frequency_max=8000, truncation="rand_trunc").save_pretrained(folder)
    BertTokenizer(vocab={w: i for i, w in enumerate(WORDS)}).save_pretrained(folder)
    return model


def test_clap_round_trip_normalised_and_deterministic(tmp_path):
    model = save_tiny_clap(tmp_path)
    emb = build_embedder("clap", tmp_path)
    assert (emb.sample_rate, emb.mode, emb.dim) == (16000, "clip", 8)
    clips = noise(2, 1.5, 16000)  # longer than max_length_s: the extractor crops (seeded)
    audio = emb.embed(clips, 16000)
    np.testing.assert_allclose(np.linalg.norm(audio, axis=1), 1.0, atol=1e-5)
    again = build_embedder("clap", tmp_path, batch_size=1)
    np.testing.assert_allclose(again.embed(clips, 16000), audio, atol=1e-6)
    text = emb.embed_text(["a dog barks", "rain falling"])
    ids = emb.tokenizer(["a dog barks", "rain falling"], padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model.text_model(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"])
        ref = torch.nn.functional.normalize(model.text_projection(out.pooler_output), dim=-1)
    np.testing.assert_allclose(text, ref.numpy(), atol=1e-6)
    np.testing.assert_array_equal(again.embed_text(["a dog barks", "rain falling"]), text)
    score = clap_score_of_audio(emb, ["a dog barks", "rain falling"], clips, 16000)
    assert score == pytest.approx(float(np.mean(np.sum(text * audio, axis=1))), abs=1e-6)
