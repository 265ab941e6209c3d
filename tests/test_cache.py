"""Latent cache: latents equal direct VAE encoding, one text row per unique caption, disk round trip, CLI."""

import functools
import json
import pickle

import numpy as np
import pytest
import soundfile as sf
import torch

from soundctm.audio.mel import MelSpectrogram
from soundctm.audio.text import build_text_encoder
from soundctm.audio.vae import AudioVAE, AudioVAEConfig
from soundctm.data.cache import (
    INDEX_FILE,
    LatentCacheDataset,
    build_cache,
    concat_embeddings,
    main,
    write_cache,
)

SR, N_SAMPLES = 16000, 4000  # 0.25 s clips
CAPTIONS = ["a dog barks", "rain falling", "a loud beep"]


@pytest.fixture(scope="module")
def text_encoder():
    return build_text_encoder("minilm")


@pytest.fixture(scope="module")
def vae():
    torch.manual_seed(0)
    config = AudioVAEConfig(latent_channels=4, block_out_channels=(8, 8), norm_num_groups=4, layers_per_block=1)
    return AudioVAE(config).eval()


def make_examples(n=10, length=N_SAMPLES):
    rng = np.random.default_rng(0)
    return [(0.3 * rng.standard_normal(length).astype(np.float32), CAPTIONS[i % 3],
             {"index": np.int64(i), "kind": f"k{i % 2}"} | ({"extra": 1.5} if i == 0 else {}))
            for i in range(n)]


@functools.lru_cache
def mel_of(config):
    return MelSpectrogram(config)


def direct_latent(vae, wave):
    with torch.no_grad():
        return vae.encode(mel_of(vae.config.mel)(torch.from_numpy(wave)[None]))[0]


def test_latents_and_captions_match_direct_encoding(vae, text_encoder):
    examples = make_examples()
    cache = build_cache(examples, vae, text_encoder, batch_size=4)
    assert len(cache) == 10 and cache.captions[0] == "" and sorted(cache.captions[1:]) == sorted(CAPTIONS)
    for i, (wave, caption, _) in enumerate(examples):
        assert torch.allclose(cache.latents[i], direct_latent(vae, wave), atol=1e-5)
        assert cache.captions[cache.caption_index[i]] == caption
    for row, caption in enumerate(cache.captions):
        ref = text_encoder.encode([caption], allow_empty=True)
        n = int(ref.mask.sum())
        assert int(cache.text.mask[row].sum()) == n
        assert torch.allclose(cache.text.tokens[row, :n], ref.tokens[0, :n], atol=1e-5)
        assert torch.allclose(cache.text.pooled[row], ref.pooled[0], atol=1e-5)
    uncond = text_encoder.encode_unconditional(1)
    assert torch.allclose(cache.unconditional.pooled, uncond.pooled, atol=1e-5)


def test_text_is_encoded_once_per_unique_caption(vae):
    encoder = build_text_encoder("minilm")
    batch_sizes = []
    encoder.model.register_forward_hook(lambda m, a, kw, out: batch_sizes.append(kw["input_ids"].shape[0]),
                                        with_kwargs=True)
    cache = build_cache(make_examples(12), vae, encoder, batch_size=5)
    assert sum(batch_sizes) == 4  # 3 unique captions + the unconditional ""
    assert cache.text.tokens.shape[0] == 4 and cache.caption_index.tolist() == [1, 2, 3] * 4


def test_write_then_read_round_trip(tmp_path, vae, text_encoder):
    examples = make_examples(10)
    memory = build_cache(examples, vae, text_encoder, batch_size=3)
    out = write_cache(examples, vae, text_encoder, tmp_path / "c", batch_size=3, shard_size=4)
    index = json.loads((out / INDEX_FILE).read_text())
    assert [s["num_samples"] for s in index["shards"]] == [4, 4, 2]
    assert index["attributes"]["index"] == list(range(10))
    assert index["attributes"]["extra"] == [1.5] + [None] * 9
    assert index["text_encoder"]["name"] == "minilm" and index["mel"]["n_mels"] == 64
    for in_memory in (True, False):
        ds = LatentCacheDataset(out, in_memory=in_memory)
        assert len(ds) == 10 and ds.captions == memory.captions
        for i in (0, 3, 4, 9, -1):
            item = ds[i]
            c = memory.caption_index[i]
            assert torch.equal(item["latent"], memory.latents[i]) and item["caption_index"] == c
            assert torch.equal(item["tokens"], memory.text.tokens[c]) and torch.equal(item["mask"], memory.text.mask[c])
            assert torch.equal(item["pooled"], memory.text.pooled[c])
    with pytest.raises(IndexError):
        ds[10]
    clone = pickle.loads(pickle.dumps(ds))  # what DataLoader workers receive
    assert torch.equal(clone[7]["latent"], memory.latents[7])


def test_saved_cache_loads_back_equal(tmp_path, vae, text_encoder):
    memory = build_cache(make_examples(5), vae, text_encoder)
    back = LatentCacheDataset(memory.save(tmp_path / "c", shard_size=2)).to_cache()
    assert torch.equal(back.latents, memory.latents) and torch.equal(back.caption_index, memory.caption_index)
    assert torch.equal(back.text.tokens, memory.text.tokens) and back.attributes == memory.attributes
    assert torch.equal(LatentCacheDataset(tmp_path / "c", in_memory=False).to_cache().latents, memory.latents)


def test_dataloader_batches_and_unconditional_swap(tmp_path, vae, text_encoder):
    ds = LatentCacheDataset(write_cache(make_examples(6), vae, text_encoder, tmp_path / "c"))
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch["latent"].shape == (4, *vae.latent_shape(1 + N_SAMPLES // 160))
    assert batch["tokens"].shape[:2] == batch["mask"].shape and batch["caption_index"].shape == (4,)
    drop = torch.tensor([True, False, True, False])  # what a training loop does for CFG dropout
    tokens = torch.where(drop[:, None, None], ds.unconditional.tokens, batch["tokens"])
    assert torch.equal(tokens[0], ds.text.tokens[0]) and torch.equal(tokens[1], batch["tokens"][1])
    assert int(ds.unconditional.mask.sum()) == 2  # [CLS] [SEP]


def test_waves_are_fitted_to_one_clip_length(vae, text_encoder):
    examples = [(np.ones(n, np.float32) * 0.1, "hum", {}) for n in (3000, 4000, 5000)]
    cache = build_cache(examples, vae, text_encoder, clip_samples=N_SAMPLES)
    ref = direct_latent(vae, np.ones(N_SAMPLES, np.float32) * 0.1)
    assert torch.allclose(cache.latents[2], ref, atol=1e-5)
    padded = np.concatenate([np.ones(3000, np.float32) * 0.1, np.zeros(1000, np.float32)])
    assert torch.allclose(cache.latents[0], direct_latent(vae, padded), atol=1e-5)


def test_concat_embeddings_pads_rows(text_encoder):
    a, b = text_encoder.encode(["a dog"]), text_encoder.encode(["rain falling on a tin roof tonight"])
    both = concat_embeddings([a, b])
    assert both.tokens.shape[1] == b.tokens.shape[1] and both.mask[0].sum() == a.mask.sum()
    assert both.tokens[0, a.tokens.shape[1] :].abs().sum() == 0


def test_bad_inputs(tmp_path, vae, text_encoder):
    with pytest.raises(ValueError, match="examples"):
        build_cache([], vae, text_encoder)
    with pytest.raises(ValueError, match="batch_size"):
        build_cache(make_examples(2), vae, text_encoder, batch_size=0)
    with pytest.raises(ValueError, match="shard_size"):
        write_cache(make_examples(2), vae, text_encoder, tmp_path / "c", shard_size=0)
    with pytest.raises(ValueError, match="index.json"):
        LatentCacheDataset(tmp_path)


def write_manifest(tmp_path):
    rng = np.random.default_rng(1)
    rows = ["file_name,caption,label"]
    for i in range(5):
        sf.write(tmp_path / f"clip{i}.wav", 0.2 * rng.standard_normal(SR // 2).astype(np.float32), SR)
        rows.append(f"clip{i}.wav,{CAPTIONS[i % 3]},{i}")
    rows.append("missing.wav,gone,9")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    return tmp_path / "m.csv"


def test_cli_manifest_to_cache(tmp_path, vae, capsys):
    manifest, vae_dir = write_manifest(tmp_path), vae.save_pretrained(tmp_path / "vae")
    argv = ["--data", str(manifest), "--vae", str(vae_dir), "--out", str(tmp_path / "c"), "--clip-seconds", "0.25",
            "--shard-size", "2"]
    with pytest.warns(UserWarning, match="missing 1"):
        assert main(argv) == 0
    ds = LatentCacheDataset(tmp_path / "c")
    assert len(ds) == 5 and ds.attributes["label"] == ["0", "1", "2", "3", "4"]
    assert ds.index["skipped"]["missing"] == 1 and ds.index["clip_samples"] == N_SAMPLES
    wave = sf.read(tmp_path / "clip3.wav", dtype="float32")[0][:N_SAMPLES]
    assert torch.allclose(ds[3]["latent"], direct_latent(vae, wave), atol=1e-5)
    assert "wrote 5 samples" in capsys.readouterr().out
    capsys.readouterr()
    assert main(argv) == 2  # refuses to overwrite without --overwrite
    assert "--overwrite" in capsys.readouterr().err


@pytest.mark.parametrize("argv_extra,match", [
    (["--vae", "/nonexistent"], "--vae"),
    (["--n", "0"], "--n"),
    (["--data", "nope.csv"], "--data"),
    (["--bogus"], "unrecognized"),
])
def test_cli_bad_input_exits_2_with_one_line(tmp_path, vae, capsys, argv_extra, match):
    manifest, vae_dir = write_manifest(tmp_path), vae.save_pretrained(tmp_path / "vae")
    argv = ["--data", str(manifest), "--vae", str(vae_dir), "--out", str(tmp_path / "c")] + argv_extra
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert match in err and len(err.strip().splitlines()) == 1


def test_cli_synthcaps_to_cache(tmp_path, vae):
    SynthCaps = pytest.importorskip("soundctm.data.synthcaps").SynthCaps

    vae_dir = vae.save_pretrained(tmp_path / "vae")
    argv = ["--data", "synthcaps", "--n", "4", "--seed", "3", "--vae", str(vae_dir), "--out", str(tmp_path / "c"),
            "--batch-size", "3"]
    assert main(argv) == 0
    ds, clips = LatentCacheDataset(tmp_path / "c"), SynthCaps(4, 3, "train")
    assert len(ds) == 4 and ds.index["source"] == {"data": "synthcaps", "n": 4, "seed": 3, "split": "train"}
    for i in range(4):
        wave, caption, attrs = clips[i]
        assert ds.captions[ds.caption_index[i]] == caption
        assert ds.attributes["source"][i] == attrs["source"]
        assert torch.allclose(ds[i]["latent"], direct_latent(vae, wave), atol=1e-5)


def test_getitems_returns_the_stacked_batch(tmp_path):
    from recipe_utils import tiny_cache

    from soundctm.data.cache import LatentCacheDataset

    ds = LatentCacheDataset(tiny_cache(tmp_path / "c", n=10))
    idx = [3, 0, 7, 7]
    batch = ds.batched().__getitems__(idx)
    for key in ("latent", "tokens", "mask", "pooled", "caption_index"):
        assert torch.equal(batch[key], torch.stack([ds[i][key] for i in idx]))
