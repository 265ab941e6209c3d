"""What makes SoundCTM SoundCTM, pinned against computations written out here from the papers' formulas.

The recipe's CTM term is recomputed by hand (CTM, Kim et al. 2024, eq. 8 with the σ_min matching of sec. 4;
SoundCTM, Saito et al. 2025, eq. 4): the stop-grad EMA target θ⁻, the mapping of both sides to σ_min with θ⁻, the
CFG-guided teacher at the sampled ω inside the target's solve, the adaptive DSM weight (CTM eq. 10) and the caption
dropout. The pipeline's score sampler (g(x, t, t) at ω = 1, CFG on top) and ν-sampling (SoundCTM eq. 7) are checked
the same way. ``scripts/check_guards.py`` changes each of these in a copy of the code and checks that a test fails.
"""

import copy

import pytest
import torch

from soundctm.core import losses, samplers, schedule, solvers
from soundctm.core.precond import CTMPrecond, EDMDenoiser, edm_loss_weight
from soundctm.nn.discriminator import FeatureDiscriminator
from soundctm.nn.unet import UNET_PRESETS, TextUNet, TwoTimeTextUNet, UNetConfig
from soundctm.train import ctm_terms
from soundctm.train.ema import ema_key

B, SHAPE, L, DIM = 4, (4, 8, 12), 5, 16


def perturbed(module: torch.nn.Module, seed: int, scale: float = 0.05) -> torch.nn.Module:
    """A copy of ``module`` with every weight moved by seeded Gaussian noise (zero-initialised layers included)."""
    out = copy.deepcopy(module)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in out.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return out


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(0)
    teacher = TextUNet.from_config(UNetConfig.from_dict({**UNET_PRESETS["debug"].__dict__})).eval()
    student = perturbed(TwoTimeTextUNet.from_teacher(teacher), 1)
    return {"net": student, ema_key("net", 0.999): perturbed(student, 2).requires_grad_(False),
            "teacher": teacher.requires_grad_(False)}


class Text:
    def __init__(self, tokens, mask):
        self.tokens, self.mask = tokens, mask


def inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    batch = {"latent": 0.5 * torch.randn(B, *SHAPE, generator=g), "tokens": torch.randn(B, L, DIM, generator=g),
             "mask": torch.ones(B, L, dtype=torch.bool)}
    mask = torch.ones(1, L, dtype=torch.bool)
    mask[0, 2:] = False
    return batch, Text(torch.randn(1, L, DIM, generator=g), mask)


def reference_ctm_loss(nets, c: ctm_terms.CTMConfig, batch, uncond, seed: int):
    """The recipe's loss written out: the same draws in the same order, every formula spelled here."""
    rng = torch.Generator().manual_seed(seed)
    x0 = batch["latent"]
    drop = torch.rand(B, generator=rng) < c.caption_dropout
    assert 0 < int(drop.sum()) < B, "pick a seed that drops some captions but not all"
    tokens = torch.where(drop[:, None, None], uncond.tokens.expand(B, -1, -1), batch["tokens"])
    mask = torch.where(drop[:, None], uncond.mask.expand(B, -1), batch["mask"])
    omega = c.omega_min + (c.omega_max - c.omega_min) * torch.rand(B, generator=rng)
    grid = schedule.ctm_grid(c.grid_size, c.sigma_min, c.sigma_max)
    times = losses.sample_ctm_times(B, grid, c.max_k, c.k_weighting, generator=rng)
    noise = torch.randn(x0.shape, generator=rng)
    student, target = CTMPrecond(nets["net"], c.sigma_data), CTMPrecond(nets[ema_key("net", 0.999)], c.sigma_data)
    D = EDMDenoiser(nets["teacher"], c.sigma_data)
    cond = {"tokens": tokens, "mask": mask, "omega": omega}

    def guided(x, sigma, i):  # D_ω = D_∅ + ω (D_c − D_∅) for sample i
        d_c = D(x, sigma, tokens=tokens[i:i + 1], mask=mask[i:i + 1])
        d_u = D(x, sigma, tokens=uncond.tokens, mask=uncond.mask)
        return d_u + omega[i] * (d_c - d_u)

    x_t = x0 + times.t[:, None, None, None] * noise
    estimate = student(x_t, times.t, times.s, **cond)
    with torch.no_grad():
        x_u = torch.cat([solvers.solve(lambda x, sg, i=i: guided(x, sg, i), x_t[i:i + 1], times.t[i:i + 1],
                                       times.u[i:i + 1], int(times.k[i]), method="heun") for i in range(B)])
        tgt = target(x_u, times.u, times.s, **cond)
        sigma_min = torch.full((B,), c.sigma_min)
        tgt = target(tgt, times.s, sigma_min, **cond)
    est = target(estimate, times.s, sigma_min, **cond)
    ctm = ((est - tgt) ** 2).flatten(1).mean(1).mean()
    sigma = schedule.sample_half_lognormal_half_grid(B, grid, generator=rng)
    n2 = torch.randn(x0.shape, generator=rng)
    den = student.denoiser()(x0 + sigma[:, None, None, None] * n2, sigma, tokens=tokens, mask=mask,
                             omega=torch.ones(B))
    dsm = (edm_loss_weight(sigma, c.sigma_data) * ((den - x0) ** 2).flatten(1).mean(1)).mean()
    w = nets["net"].unet.conv_out.weight
    g_ctm = torch.autograd.grad(ctm, w, retain_graph=True)[0]
    g_dsm = torch.autograd.grad(dsm, w, retain_graph=True)[0]
    lam = g_ctm.norm() / g_dsm.norm()
    return ctm.detach(), dsm.detach(), lam, (ctm + c.dsm_weight * lam * dsm).detach()


def test_the_recipes_ctm_and_dsm_terms_equal_the_written_out_formulas(nets):
    """θ⁻ (not θ) gives the target and maps both sides to σ_min; the teacher's solve is CFG-guided at each sample's
    ω; the DSM term is weighted by ‖∇L_CTM‖/‖∇L_DSM‖ at the last layer; captions are dropped for the student."""
    c = ctm_terms.CTMConfig(distance="l2", caption_dropout=0.5, grid_size=6, max_k=3, dsm_weight=0.7)
    batch, uncond = inputs()
    seed = 5
    loss_fn = ctm_terms.soundctm_loss(c, ctm_terms.GANConfig(), nets["teacher"], uncond, 0.999)
    loss, logs = loss_fn(batch, nets, 0, torch.Generator().manual_seed(seed))
    ctm, dsm, lam, total = reference_ctm_loss(nets, c, batch, uncond, seed)
    logs = {k: float(v) for k, v in logs.items()}
    assert logs["train/ctm"] > 0 and float(lam) != pytest.approx(1.0, abs=0.05)
    assert logs["train/ctm"] == pytest.approx(float(ctm), rel=1e-4)
    assert logs["train/dsm"] == pytest.approx(float(dsm), rel=1e-4)
    assert logs["train/dsm_weight"] == pytest.approx(float(lam), rel=1e-3)
    assert float(loss.detach()) == pytest.approx(float(total), rel=1e-4)


def test_the_recipe_drops_captions_by_default():
    """ν-sampling and CFG on the student need its unconditional model: the default config trains it."""
    assert ctm_terms.CTMConfig().caption_dropout > 0


def test_the_ctm_grid_follows_the_configured_sigma_range(nets):
    """ctm.sigma_min / sigma_max reach the CTM term's grid (one source of truth for every term): with σ_max = 20
    every drawn t lies on the 20 → 0.01 grid."""
    c = ctm_terms.CTMConfig(distance="l2", grid_size=6, max_k=2, sigma_min=0.01, sigma_max=20.0, dsm_weight=0)
    grid = schedule.ctm_grid(6, 0.01, 20.0)
    seen = []
    batch, uncond = inputs()
    spy = dict(nets)

    class Spy(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.inner = net

        def forward(self, x_in, c_noise_t, c_noise_s, *a, **k):
            seen.append(c_noise_t.detach().clone())
            return self.inner(x_in, c_noise_t, c_noise_s, *a, **k)

    spy["net"] = Spy(nets["net"])
    spy["net"].unet = nets["net"].unet
    ctm_terms.soundctm_loss(c, ctm_terms.GANConfig(), nets["teacher"], uncond, 0.999)(
        batch, spy, 0, torch.Generator().manual_seed(0))
    t = torch.exp(4 * seen[0]) if seen else None  # EDM's c_noise = ln(σ) / 4
    assert t is not None and all(torch.isclose(grid, v, rtol=1e-4).any() for v in t)


def test_the_gan_term_trains_its_discriminator_to_tell_student_samples_from_data(nets):
    """Optimising only the discriminator on the GAN term's loss moves its weights and lifts its accuracy on fresh
    batches from chance to above 0.8 (the tiny student's 1-step samples are far from these latents)."""
    torch.manual_seed(0)
    chans = UNET_PRESETS["debug"].block_out_channels
    disc = FeatureDiscriminator([*chans, chans[-1]], 16)
    start = [p.detach().clone() for p in disc.parameters()]
    models = {**nets, "disc": disc}
    c = ctm_terms.CTMConfig(distance="l2")
    term = ctm_terms.gan_term(ctm_terms.GANConfig(enabled=True, disc_warmup=10**6), c,  # the discriminator alone
                              ctm_terms.teacher_features(nets["teacher"], 0.5))
    opt = torch.optim.Adam(disc.parameters(), lr=3e-3)

    def accuracy(step, seed):
        batch, _ = inputs(seed)
        batch["latent"] = batch["latent"] * 0.2 + 1.0
        with torch.no_grad():
            return float(term(batch, models, step, torch.Generator().manual_seed(seed), torch.zeros(()))[1]
                         ["train/gan_acc"])

    first = sum(accuracy(0, 1000 + i) for i in range(4)) / 4
    for step in range(40):
        batch, _ = inputs(step)
        batch["latent"] = batch["latent"] * 0.2 + 1.0
        loss, logs = term(batch, models, step, torch.Generator().manual_seed(step), torch.zeros(()))
        opt.zero_grad()
        loss.backward()
        opt.step()
    last = sum(accuracy(40, 1000 + i) for i in range(4)) / 4
    assert any(not torch.equal(a, b) for a, b in zip(start, disc.parameters()))
    assert first < 0.75 and last > 0.8, (first, last)


# ---- the pipeline's samplers ----

@pytest.fixture(scope="module")
def pipe():
    from pipeline_utils import make_pipeline

    p = make_pipeline()
    p.student = perturbed(p.student, 3, 0.02)  # give the s and ω embeddings weight: ω must matter
    return p


def pipeline_inputs(pipe, prompt="a high beep"):
    cond, uncond = pipe.encode_text([prompt])
    x_T = 80.0 * torch.randn(1, *pipe.config.latent_shape, generator=torch.Generator().manual_seed(0))
    return x_T, cond, uncond


def test_the_score_sampler_guides_the_students_denoiser_at_omega_one(pipe):
    """sampler="score": Heun on D_w = g_∅ + w (g_c − g_∅) with g(x, σ, σ) evaluated at ω = 1 (the student's own
    unguided score), not at ω = guidance."""
    x_T, cond, uncond = pipeline_inputs(pipe)
    w, sig = 3.0, schedule.append_zero(schedule.karras_sigmas(4))
    g = CTMPrecond(pipe.student, pipe.config.sigma_data).denoiser()

    def D(x, sigma, **_):
        one = torch.ones(x.shape[0])
        d_c, d_u = g(x, sigma, omega=one, **cond), g(x, sigma, omega=one, **uncond)
        return d_u + w * (d_c - d_u)

    with torch.no_grad():
        ref = samplers.sample_ode(D, x_T, sig, "heun")
        out = pipe.sample_latents(x_T, cond, uncond, 4, 0.0, w, 1.0, "score", "heun", torch.Generator(),
                                  sigmas=sig)
        at_w = samplers.sample_ode(lambda x, s, **_: g(x, s, omega=torch.full((1,), w), **cond), x_T, sig, "heun")
    assert torch.allclose(out, ref, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(at_w, ref, atol=1e-3)


def test_nu_sampling_mixes_the_conditional_and_unconditional_jumps(pipe):
    """sampler="ctm", ν: each jump is G_∅ + ν (G_c − G_∅), both at the same ω (SoundCTM eq. 7)."""
    x_T, cond, uncond = pipeline_inputs(pipe)
    nu, w, sig = 2.5, 3.0, schedule.karras_sigmas(3)
    G = CTMPrecond(pipe.student, pipe.config.sigma_data)
    omega = torch.full((1,), w)

    def G_nu(x, t, s, **_):
        g_c, g_u = G(x, t, s, omega=omega, **cond), G(x, t, s, omega=omega, **uncond)
        return g_u + nu * (g_c - g_u)

    with torch.no_grad():
        ref = samplers.sample_ctm(G_nu, x_T, sig, 0.0)
        out = pipe.sample_latents(x_T, cond, uncond, 2, 0.0, w, nu, "ctm", "heun", torch.Generator(), sigmas=sig)
        plain = pipe.sample_latents(x_T, cond, uncond, 2, 0.0, w, 1.0, "ctm", "heun", torch.Generator(), sigmas=sig)
    assert torch.allclose(out, ref, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(out, plain, atol=1e-3)
