import pytest
import torch

from soundctm.core.guidance import classifier_free_guidance, double_cond


def linear_denoiser(x, sigma, emb):
    """A denoiser whose output depends on the condition: x·(1/(1+σ)) + emb."""
    return x / (1 + sigma[:, None]) + emb


def test_scale_one_is_identity_without_unconditional_pass():
    calls = []

    def D(x, sigma, emb):
        calls.append(len(x))
        return linear_denoiser(x, sigma, emb)

    guided = classifier_free_guidance(D, 1.0, {"emb": torch.zeros(1, 2)})
    x, emb = torch.randn(3, 2), torch.randn(3, 2)
    assert torch.equal(guided(x, torch.ones(3), emb=emb), D(x, torch.ones(3), emb=emb))
    assert calls == [3, 3]


def test_identical_branches_give_identity_for_any_scale():
    x, emb = torch.randn(4, 2), torch.randn(4, 2)
    guided = classifier_free_guidance(linear_denoiser, 7.5, {"emb": emb})
    assert torch.allclose(guided(x, torch.ones(4), emb=emb), linear_denoiser(x, torch.ones(4), emb))


def test_guidance_formula_and_per_sample_scale():
    x, emb, null = torch.randn(3, 2), torch.randn(3, 2), torch.randn(1, 2)
    sigma = torch.full((3,), 0.5)
    w = torch.tensor([0.0, 1.0, 3.0])
    out = classifier_free_guidance(linear_denoiser, w, {"emb": null})(x, sigma, emb=emb)
    c, u = linear_denoiser(x, sigma, emb), linear_denoiser(x, sigma, null.expand(3, 2))
    assert torch.allclose(out, u + w[:, None] * (c - u))
    assert torch.allclose(out[0], u[0]) and torch.allclose(out[1], c[1])


def test_works_for_two_time_ctm_callables_and_extra_conds():
    def G(x, t, s, emb, omega):
        return x * (s / t)[:, None] + emb * omega[:, None]

    x, emb = torch.randn(2, 2), torch.randn(2, 2)
    t, s, omega = torch.tensor([2.0, 4.0]), torch.tensor([1.0, 1.0]), torch.tensor([1.0, 2.0])
    out = classifier_free_guidance(G, 2.0, {"emb": torch.zeros(1, 2)})(x, t, s, emb=emb, omega=omega)
    c, u = G(x, t, s, emb, omega), G(x, t, s, torch.zeros(2, 2), omega)
    assert torch.allclose(out, u + 2 * (c - u))


def test_sequence_conditions_are_padded_to_a_common_length():
    tokens, mask = torch.randn(2, 5, 3), torch.ones(2, 5, dtype=torch.bool)
    both = double_cond({"tokens": tokens, "mask": mask},
                       {"tokens": torch.randn(1, 2, 3), "mask": torch.ones(1, 2, dtype=torch.bool)}, 2)
    assert both["tokens"].shape == (4, 5, 3) and both["mask"].shape == (4, 5)
    assert not both["mask"][2:, 2:].any() and both["mask"][2:, :2].all()
    with pytest.raises(ValueError, match="shapes differ"):
        double_cond({"e": torch.randn(2, 3, 4)}, {"e": torch.randn(1, 3, 5)}, 2)


def test_scale_from_a_condition_follows_the_batch():
    x, emb, null = torch.randn(4, 2), torch.randn(4, 2), torch.zeros(1, 2)
    w = torch.tensor([0.5, 1.0, 2.0, 4.0])
    by_name = classifier_free_guidance(linear_denoiser_w, "w", {"emb": null})
    fixed = classifier_free_guidance(linear_denoiser_w, w, {"emb": null})
    sigma = torch.ones(4)
    assert torch.allclose(by_name(x, sigma, emb=emb, w=w), fixed(x, sigma, emb=emb, w=w))
    idx = torch.tensor([1, 3])
    assert torch.allclose(by_name(x[idx], sigma[idx], emb=emb[idx], w=w[idx]), fixed(x, sigma, emb=emb, w=w)[idx])


def linear_denoiser_w(x, sigma, emb, w=None):
    return linear_denoiser(x, sigma, emb)
