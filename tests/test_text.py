"""Text encoders: MiniLM semantics, padding invariance, the LRU cache, input checks, T5/CLAP save→load."""

import pytest
import torch
import torch.nn.functional as F

from soundctm.audio.text import (
    TEXT_ENCODERS,
    TextEmbedding,
    build_text_encoder,
    check_captions,
    masked_mean,
    pad_embeddings,
)

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "loud", "beep", "rain", "falling", "dog", "barks"]


@pytest.fixture(scope="module")
def minilm():
    return build_text_encoder("minilm")


def count_forward_calls(encoder) -> list[int]:
    """Register a hook on the encoder's network recording each call's batch size."""
    calls: list[int] = []
    encoder.model.register_forward_hook(lambda mod, args, kwargs, out: calls.append(kwargs["input_ids"].shape[0]),
                                        with_kwargs=True)
    return calls


def tiny_tokenizer():
    from transformers import BertTokenizer

    return BertTokenizer(vocab={w: i for i, w in enumerate(WORDS)})


def test_minilm_similar_captions_are_closer(minilm):
    emb = minilm.encode(["a loud beep", "a loud beeping tone", "rain falling"])
    sim = emb.pooled @ emb.pooled.T
    assert sim[0, 1] > sim[0, 2] + 0.1
    assert sim[1, 0] > sim[1, 2] + 0.1
    assert torch.allclose(emb.pooled.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert emb.tokens.shape[0] == 3 and emb.tokens.shape[2] == minilm.dim == 384
    assert emb.mask.dtype == torch.bool and emb.mask.shape == emb.tokens.shape[:2]


def test_minilm_mask_counts_tokens_and_padding_is_zero(minilm):
    captions = ["a dog barks", "rain falling on a metal roof during a storm"]
    emb = minilm.encode(captions)
    lengths = [len(ids) for ids in minilm.tokenizer(captions)["input_ids"]]
    assert emb.mask.sum(1).tolist() == lengths
    assert torch.all(emb.tokens[~emb.mask] == 0)


def test_padding_does_not_change_embedding(minilm):
    minilm.clear_cache()
    alone = minilm.encode(["a loud beep"])
    minilm.clear_cache()
    batched = minilm.encode(["a loud beep", "a very long caption about thunder, wind and heavy rain in a forest"])
    n = alone.mask.sum()
    assert torch.allclose(alone.tokens[0, :n], batched.tokens[0, :n], atol=1e-5)
    assert torch.allclose(alone.pooled[0], batched.pooled[0], atol=1e-5)


def test_cache_second_call_does_not_run_model(minilm):
    minilm.clear_cache()
    calls = count_forward_calls(minilm)
    first = minilm.encode(["a dog barks", "rain falling", "a dog barks"])
    assert calls == [2]  # one forward, only the two unique captions
    second = minilm.encode(["rain falling", "a dog barks"])
    assert calls == [2]
    assert torch.equal(second.pooled[1], first.pooled[0])
    minilm.encode(["a dog barks", "a cat meows"])
    assert calls == [2, 1]  # only the new caption is encoded


def test_cache_is_lru_bounded():
    enc = build_text_encoder("minilm", cache_size=2)
    calls = count_forward_calls(enc)
    enc.encode("a dog barks")
    enc.encode("rain falling")
    enc.encode("a dog barks")  # refresh: "rain falling" is now the oldest
    enc.encode("a loud beep")  # evicts "rain falling"
    assert calls == [1, 1, 1]
    enc.encode("a dog barks")
    assert calls == [1, 1, 1]
    enc.encode("rain falling")
    assert calls == [1, 1, 1, 1]


def test_string_and_list_inputs_agree(minilm):
    one = minilm.encode("a loud beep")
    listed = minilm.encode(["a loud beep"])
    assert torch.equal(one.tokens, listed.tokens) and torch.equal(one.pooled, listed.pooled)


@pytest.mark.parametrize("bad", ["", "   ", ["ok", ""], [], None, 3, ["ok", 5], {"a": 1}])
def test_bad_captions_raise_value_error_naming_argument(minilm, bad):
    with pytest.raises(ValueError, match="captions"):
        minilm.encode(bad)


def test_unconditional_caption_path(minilm):
    uncond = minilm.encode_unconditional(3)
    assert uncond.tokens.shape[0] == 3
    assert torch.equal(uncond.tokens[0], uncond.tokens[2])
    explicit = minilm.encode([""], allow_empty=True)
    assert torch.equal(explicit.pooled[0], uncond.pooled[0])
    assert uncond.mask.sum(1).tolist() == [2, 2, 2]  # [CLS] [SEP]
    with pytest.raises(ValueError, match="batch_size"):
        minilm.encode_unconditional(0)


def test_overlong_caption_truncated_with_warning():
    enc = build_text_encoder("minilm", max_length=8)
    with pytest.warns(UserWarning, match="truncated to its first 8 of"):
        emb = enc.encode(["a loud beep followed by rain falling on a roof and a dog barking far away", "rain"])
    assert emb.mask.sum(1).tolist() == [8, 3]


def test_a_10000_character_prompt_says_in_one_line_that_it_was_truncated(capfd):
    """Only our one-line warning: not the tokenizer's 'Token indices sequence length ...' log line."""
    enc = build_text_encoder("minilm")
    with pytest.warns(UserWarning) as caught:
        emb = enc.encode("a beep " * 1430)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "truncated to its first 256 of" in messages[0] and "\n" not in messages[0]
    assert "Token indices" not in capfd.readouterr().err
    assert emb.mask.sum().item() == 256


def test_outputs_are_frozen_and_deterministic(minilm):
    assert not minilm.model.training
    minilm.clear_cache()
    a = minilm.encode("a dog barks")
    minilm.clear_cache()
    b = minilm.encode("a dog barks")
    assert not a.tokens.requires_grad and torch.equal(a.tokens, b.tokens)


def test_masked_mean_closed_form():
    states = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[True, True, False]])
    assert torch.equal(masked_mean(states, mask), torch.tensor([[2.0, 3.0]]))


def test_pad_embeddings_pads_to_longest():
    rows = [(torch.ones(2, 3), torch.ones(4)), (torch.full((4, 3), 2.0), torch.zeros(4))]
    emb = pad_embeddings(rows)
    assert isinstance(emb, TextEmbedding) and emb.tokens.shape == (2, 4, 3) and emb.pooled.shape == (2, 4)
    assert emb.mask.tolist() == [[True, True, False, False], [True] * 4]
    assert emb.tokens[0, 2:].abs().sum() == 0


def test_check_captions_accepts_tuple():
    assert check_captions(("a", "b")) == ["a", "b"]


def test_registry_and_path_errors(tmp_path):
    assert {"minilm", "t5", "flan-t5", "clap"} <= set(TEXT_ENCODERS)
    with pytest.raises(ValueError, match="name must be one of"):
        build_text_encoder("bert-huge")
    with pytest.raises(ValueError, match="path"):
        build_text_encoder("t5")
    with pytest.raises(ValueError, match="path"):
        build_text_encoder("clap", path=tmp_path / "missing")


def save_tiny_t5(folder):
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(0)
    config = T5Config(vocab_size=len(WORDS), d_model=16, d_kv=8, d_ff=32, num_layers=2, num_heads=2,
                      pad_token_id=0, decoder_start_token_id=0)
    model = T5EncoderModel(config).eval()
    model.save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return model


def save_tiny_clap(folder):
    from transformers import ClapConfig, ClapModel

    torch.manual_seed(0)
    text = dict(vocab_size=len(WORDS), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                intermediate_size=32, max_position_embeddings=40, pad_token_id=0)
    audio = dict(depths=[1, 1], num_attention_heads=[1, 1], patch_embeds_hidden_size=8, hidden_size=16,
                 num_mel_bins=16, spec_size=32, window_size=4, patch_size=4)
    model = ClapModel(ClapConfig(text_config=text, audio_config=audio, projection_dim=8)).eval()
    model.save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return model


def test_t5_save_load_round_trip(tmp_path):
    model = save_tiny_t5(tmp_path)
    enc = build_text_encoder("t5", path=tmp_path)
    emb = enc.encode(["a loud beep", "rain falling"])
    ids = enc.tokenizer(["a loud beep", "rain falling"], padding=True, return_tensors="pt")
    with torch.no_grad():
        ref = model(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"]).last_hidden_state
    assert emb.tokens.shape == (2, 5, 16) and enc.dim == enc.pooled_dim == 16
    assert torch.equal(emb.tokens[emb.mask], ref[ids["attention_mask"].bool()])
    assert torch.allclose(emb.pooled, masked_mean(ref, ids["attention_mask"]), atol=1e-6)
    again = build_text_encoder("flan-t5", path=tmp_path).encode(["a loud beep", "rain falling"])
    assert torch.equal(again.tokens, emb.tokens) and torch.equal(again.pooled, emb.pooled)


def test_clap_save_load_round_trip(tmp_path):
    model = save_tiny_clap(tmp_path)
    enc = build_text_encoder("clap", path=tmp_path)
    assert enc.dim == 16 and enc.pooled_dim == 8 and enc.max_length == 38
    emb = enc.encode(["a dog barks", "rain falling"])
    ids = enc.tokenizer(["a dog barks", "rain falling"], padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model.text_model(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"])
        ref = F.normalize(model.text_projection(out.pooler_output), dim=-1)
    assert emb.pooled.shape == (2, 8)
    assert torch.allclose(emb.pooled, ref, atol=1e-6)
    assert torch.allclose(emb.pooled.norm(dim=-1), torch.ones(2), atol=1e-5)
    again = build_text_encoder("clap", path=tmp_path).encode(["a dog barks", "rain falling"])
    assert torch.equal(again.tokens, emb.tokens) and torch.equal(again.pooled, emb.pooled)
