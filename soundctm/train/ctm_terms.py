"""The loss terms of SoundCTM distillation and their configs, composed into the shared loop's ``loss_fn``.

- ``ctm_term``: CTM's trajectory loss (Kim et al. 2024, eq. 8; SoundCTM, Saito et al. 2025, eq. 4) against the
  CFG-guided teacher's solve, with the DSM auxiliary on g(x, σ, σ) weighted adaptively (CTM eq. 10);
- ``pairs_term``: jumps of the m-step sampler pulled to cached teacher trajectories (``recipes/teacher_pairs.py``);
- ``rollout_term``: the whole γ = 0 sampler pulled to the trajectory's end, optionally in decoded loudness;
- ``gan_term``: CTM's GAN term with a discriminator on frozen teacher features.

A term is ``term(batch, models, step, rng, loss) -> (loss, logs)``: it adds to the running loss (the GAN term's
adaptive weight is measured against the terms before it) and returns its scalars. ``soundctm_loss`` builds the
recipe's terms from one ``CTMRecipeParts`` and chains them in a fixed order (the order of the random draws).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from soundctm.audio.mel import MelConfig, mel_frame_levels_db
from soundctm.audio.vae import AudioVAE
from soundctm.core import losses, samplers, schedule
from soundctm.core.precond import CTMPrecond, edm_scalings
from soundctm.core.utils import append_dims, rand, randint, randn
from soundctm.data.teacher_pairs import load_pairs
from soundctm.nn.discriminator import HEADS
from soundctm.nn.unet import UNetFeatures
from soundctm.train.ema import ema_key
from soundctm.train.tasks import drop_captions, guided_teacher, last_layer_weight

DISTANCE_NAMES = ("teacher_features", *losses.DISTANCES)
ENVELOPE_RANGE_DB = 60.0  # frame levels below the teacher clip's loudest frame by more than this are floored


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _one_of(name: str, value, allowed) -> None:
    _check(value in allowed, f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")


@dataclass(frozen=True)
class CTMConfig:
    """SoundCTM's distillation knobs; every term reads its own fields (one σ range and grid for all of them)."""

    grid_size: int = 18  # CTM's N (SoundCTM used 40; CTM used 18 on CIFAR-10)
    max_k: int | None = 4  # cap on teacher Heun steps per target (cost ∝ k); None = up to N − 1
    k_weighting: str = "linear"  # P(k) ∝ k as SoundCTM, or "uniform"
    omega_min: float = 1.0  # the CFG scale ω ~ U[omega_min, omega_max] per sample
    omega_max: float = 5.0
    match: str = "sigma_min"  # compare after mapping both to σ_min with θ⁻ ("s": compare at s)
    distance: str = "teacher_features"  # or "l2", "pseudo_huber"
    dsm_weight: float = 1.0  # times the adaptive weight ‖∇L_CTM‖ / ‖∇L_DSM‖ at the last layer
    caption_dropout: float = 0.1  # the student also learns the unconditional model (ν-sampling needs it)
    sigma_data: float = 0.5
    # pair term: weight · d(G(x_a, σ_a, σ_b; ω), x_b) on pairs_batch cached teacher trajectories per step, (a, b) one
    # jump of the m-step sampler grid, m uniform over pairs_steps ((1,) = the 1-step jump x_T → x_0); "" = off
    pairs_path: str = ""
    pairs_weight: float = 1.0
    pairs_batch: int = 8
    pairs_distance: str = ""  # "" = distance; l2 keeps loudness, which the unit-normalised features weigh little
    pairs_steps: tuple[int, ...] = (1,)  # m > 1 needs a pairs file written with teacher_pairs.py --path M, m | M
    # rollout term: the whole γ = 0 sampler of rollout_steps jumps from the cached x_T, back-propagated through every
    # jump, rollout_weight · d(sampler(x_T; ω), x_0) on rollout_batch trajectories; 0 = off
    rollout_steps: int = 0
    rollout_weight: float = 1.0
    rollout_batch: int = 4
    # envelope part of the rollout: both ends decoded by the cache's VAE, mean |Δ frame level| / 10 dB; 0 = off
    rollout_envelope_weight: float = 0.0
    sigma_min: float = 0.002
    sigma_max: float = 80.0

    def __post_init__(self):
        _one_of("ctm.distance", self.distance, DISTANCE_NAMES)
        _one_of("ctm.pairs_distance", self.pairs_distance, ("", *DISTANCE_NAMES))
        _one_of("ctm.match", self.match, ("sigma_min", "s"))
        _one_of("ctm.k_weighting", self.k_weighting, ("linear", "uniform"))
        _check(self.grid_size >= 2, f"ctm.grid_size must be >= 2, got {self.grid_size}")
        _check(self.max_k is None or self.max_k >= 1, f"ctm.max_k must be >= 1 or null, got {self.max_k}")
        _check(0 < self.sigma_min < self.sigma_max,
               f"ctm.sigma_min and ctm.sigma_max need 0 < sigma_min < sigma_max, got {self.sigma_min}, "
               f"{self.sigma_max}")
        _check(0 <= self.omega_min <= self.omega_max,
               f"ctm.omega_min and ctm.omega_max need 0 <= omega_min <= omega_max, got {self.omega_min}, "
               f"{self.omega_max}")
        _check(0 <= self.caption_dropout <= 1, f"ctm.caption_dropout must lie in [0, 1], got {self.caption_dropout}")
        _check(self.sigma_data > 0, f"ctm.sigma_data must be > 0, got {self.sigma_data}")
        self._check_trajectory_terms()

    def _check_trajectory_terms(self) -> None:
        for name in ("dsm_weight", "pairs_weight", "rollout_weight", "rollout_envelope_weight", "rollout_steps"):
            _check(getattr(self, name) >= 0, f"ctm.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("pairs_batch", "rollout_batch"):
            _check(getattr(self, name) >= 1, f"ctm.{name} must be >= 1, got {getattr(self, name)}")
        _check(bool(self.pairs_steps) and min(self.pairs_steps) >= 1,
               f"ctm.pairs_steps must be step counts >= 1, got {self.pairs_steps}")
        _check(not self.rollout_steps or bool(self.pairs_path),
               "ctm.rollout_steps needs ctm.pairs_path (cached teacher trajectories)")
        _check(not self.rollout_envelope_weight or self.rollout_steps >= 1,
               f"ctm.rollout_envelope_weight needs ctm.rollout_steps >= 1, got {self.rollout_steps}")

    @property
    def grid(self) -> torch.Tensor:
        """CTM's N-point time grid on [σ_min, σ_max]: the one grid every term samples and jumps on."""
        return schedule.ctm_grid(self.grid_size, self.sigma_min, self.sigma_max)


@dataclass(frozen=True)
class GANConfig:
    """CTM's GAN term: a discriminator on frozen teacher features of reals and student samples."""

    enabled: bool = False
    weight: float = 1.0  # scaled by the adaptive weight ‖∇L‖ / ‖∇L_GAN‖ as in CTM
    start_step: int = 0
    hidden: int = 32
    # fakes: "noise" = the 1-step jump G(x_T, T, σ_min) at ω = 1 (CTM's term); "pairs" = the jump to σ_min from the
    # start of a sampler jump (ctm.pairs_steps) on a cached teacher trajectory, at its ω and caption
    source: str = "noise"
    batch: int = 8  # fakes per step for source "pairs", at most train.batch_size
    # the discriminator sees features of samples noised to σ_D, log-uniform in this range ((σ_min, σ_min) ≈ clean)
    sigma_range: tuple[float, float] = (0.002, 0.002)
    ramp_steps: int = 0  # the generator term's weight ramps linearly from 0 over this many steps
    disc_warmup: int = 0  # steps in which only the discriminator learns
    head: str = "conv"  # "conv" per feature level, or "stats" (an MLP on per-channel mean and log-std)
    # reals: "data" = cache latents (CTM's term); "teacher" = the x_0 of the fakes' own cached trajectories
    real: str = "data"

    def __post_init__(self):
        _one_of("gan.source", self.source, ("noise", "pairs"))
        _one_of("gan.head", self.head, HEADS)
        _one_of("gan.real", self.real, ("data", "teacher"))
        for name in ("disc_warmup", "ramp_steps", "start_step"):
            _check(getattr(self, name) >= 0, f"gan.{name} must be >= 0, got {getattr(self, name)}")
        _check(self.batch >= 1, f"gan.batch must be >= 1, got {self.batch}")
        lo, hi = self.sigma_range
        _check(0 < lo <= hi, f"gan.sigma_range (lo, hi) needs 0 < lo <= hi, got {self.sigma_range}")
        _check(not self.enabled or self.real != "teacher" or self.source == "pairs",
               "gan.real=teacher needs gan.source=pairs (the reals are the fakes' own trajectories)")


# ---- the CTM term ----

def ctm_term(c: CTMConfig, uncond_tokens: torch.Tensor, uncond_mask: torch.Tensor, ema_decay: float, dist,
             net: str = "net", teacher: str = "teacher"):
    """CTM's loss with the CFG-guided teacher (ω ~ U[ω_min, ω_max] per sample, reaching the student's net too) as
    the trajectory and the EMA ``ema_decay`` of ``net`` as the stop-grad target θ⁻, plus DSM on g(x, σ, σ) at
    ω = 1 (half log-normal, half grid σ) times ``c.dsm_weight`` · the adaptive weight. ``dist(a, b, sigma, tokens,
    mask)`` is the CTM distance (``distance_fn``)."""
    grid = c.grid

    def term(batch, models, step, rng, loss=None):
        x0 = batch["latent"]
        dev, b = x0.device, x0.shape[0]
        tokens, mask = drop_captions(batch["tokens"], batch["mask"], uncond_tokens, uncond_mask, c.caption_dropout,
                                     rng)
        omega = c.omega_min + (c.omega_max - c.omega_min) * rand(b, rng, dev)
        student = CTMPrecond(models[net], c.sigma_data)
        target = CTMPrecond(models[ema_key(net, ema_decay)], c.sigma_data)
        D_w = guided_teacher(models[teacher], c.sigma_data, "omega", uncond_tokens, uncond_mask)
        g = grid.to(dev)
        times = losses.sample_ctm_times(b, g, c.max_k, c.k_weighting, generator=rng)
        out = losses.ctm_loss(student, target, D_w, x0, g, lambda a, b_, s: dist(a, b_, s, tokens, mask),
                              match=c.match, times=times, noise=randn(x0.shape, rng, dev), tokens=tokens, mask=mask,
                              omega=omega)
        ctm = out.loss.mean()
        logs = {"train/ctm": ctm.detach(), "train/k": times.k.float().mean()}
        total = ctm
        if c.dsm_weight > 0:
            sigma = schedule.sample_half_lognormal_half_grid(b, g, generator=rng)
            dsm = losses.dsm_loss(student.denoiser(), x0, sigma, randn(x0.shape, rng, dev), c.sigma_data,
                                  tokens=tokens, mask=mask, omega=torch.ones_like(sigma)).mean()
            lam = losses.adaptive_weight(ctm, dsm, last_layer_weight(models[net]))
            total = ctm + c.dsm_weight * lam * dsm
            logs.update({"train/dsm": dsm.detach(), "train/dsm_weight": lam})
        return (total if loss is None else loss + total), logs

    return term


def teacher_features(teacher, sigma_data: float):
    """features(x, σ, tokens, mask): the frozen teacher UNet's down/mid block outputs at noise level σ."""
    hooks = UNetFeatures(teacher.unet)

    def features(x, sigma, tokens, mask):
        sc = edm_scalings(sigma, sigma_data)
        return hooks.collect(lambda: teacher(append_dims(sc.c_in, x.ndim) * x, sc.c_noise, tokens, mask))

    return features


def distance_fn(name: str, features=None):
    """``dist(a, b, sigma, tokens, mask) -> [B]``: the teacher-feature distance at σ under the batch's text, or a
    plain l2 / pseudo-Huber distance."""
    if name == "teacher_features":
        def dist(a, b, sigma, tokens, mask):
            return losses.feature_distance(lambda x, sg: features(x, sg, tokens, mask))(a, b, sigma)
    else:
        def dist(a, b, sigma, tokens, mask):
            return losses.DISTANCES[name](a, b)
    return dist


# ---- cached teacher trajectories ----

@dataclass(frozen=True)
class Trajectories:
    """Cached teacher trajectories as states ``[N, M+1, ...]`` at σ ``grid [M+1]`` = (σ_max, path σ…, σ_min) with x_0
    standing for the σ_min end, each with its ω and caption, and the cache's text table to condition on."""

    states: torch.Tensor
    grid: torch.Tensor
    omega: torch.Tensor
    caption_index: torch.Tensor
    tokens: torch.Tensor
    mask: torch.Tensor

    @property
    def steps(self) -> int:
        return len(self.grid) - 1


def path_states(pairs: dict[str, torch.Tensor], c: CTMConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """A pairs file's trajectories as (states ``[N, M+1, ...]``, σ ``[M+1]``), checked to lie on the M-step Karras grid
    of [ctm.sigma_min, ctm.sigma_max] with M a multiple of every m in ``c.pairs_steps``."""
    inner = pairs.get("path", pairs["x0"][:, None][:, :0])
    inner_sigma = pairs.get("path_sigma", torch.zeros(0))
    M = inner.shape[1] + 1
    _check(not any(M % m for m in c.pairs_steps),
           f"ctm.pairs_steps {c.pairs_steps} need a pairs file whose path is on a grid of a multiple of each (this "
           f"file's is {M} steps: write it with teacher_pairs.py --path M)")
    want = schedule.karras_sigmas(M + 1, c.sigma_min, c.sigma_max)[1:-1]
    _check(inner_sigma.shape == want.shape and torch.allclose(inner_sigma.float(), want, rtol=1e-4),
           f"the pairs file's path σ {inner_sigma.tolist()} are not the {M}-step Karras grid between ctm.sigma_max "
           f"and ctm.sigma_min")
    states = torch.cat([pairs["x_T"][:, None], inner, pairs["x0"][:, None]], 1)
    sigma = torch.cat([torch.tensor([c.sigma_max]), want, torch.tensor([c.sigma_min])])
    return states, sigma


def load_trajectories(c: CTMConfig, text, latent_shape: tuple[int, ...]) -> Trajectories:
    """``c.pairs_path`` read and checked against the cache (latent shape, caption rows) and the rollout's grid."""
    if not Path(c.pairs_path).is_file():
        raise FileNotFoundError(f"ctm.pairs_path {c.pairs_path!r} does not exist (write it with "
                                "recipes/teacher_pairs.py)")
    pairs = load_pairs(c.pairs_path)
    _check(tuple(pairs["x_T"].shape[1:]) == tuple(latent_shape),
           f"ctm.pairs_path latents {tuple(pairs['x_T'].shape[1:])} do not match the cache's {tuple(latent_shape)}")
    _check(int(pairs["caption_index"].max()) < len(text.tokens),
           "ctm.pairs_path refers to captions the cache does not have (another cache?)")
    states, grid = path_states(pairs, c)
    _check(not c.rollout_steps or (len(grid) - 1) % c.rollout_steps == 0,
           f"ctm.rollout_steps {c.rollout_steps} must divide the pairs file's path grid of {len(grid) - 1} steps "
           f"(write it with teacher_pairs.py --path M)")
    return Trajectories(states, grid, pairs["omega"], pairs["caption_index"], text.tokens, text.mask)


def draw_jumps(n: int, steps: tuple[int, ...], M: int, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random sampler jumps as (start, end) indices on an M-step grid: m uniform over ``steps``, then one of
    the m consecutive jumps of the m-step grid uniformly."""
    if tuple(steps) == (1,):  # the 1-step term alone draws nothing more (runs before pairs_steps reproduce)
        return torch.zeros(n, dtype=torch.long), torch.full((n,), M, dtype=torch.long)
    m = torch.tensor(steps)[randint(0, len(steps), (n,), rng, "cpu")]
    a = (rand(n, rng, "cpu") * m).long().clamp(max=m - 1)
    stride = M // m
    return a * stride, (a + 1) * stride


@dataclass(frozen=True)
class Jumps:
    """Drawn jumps on cached trajectories: from x_a at σ_a to x_b at σ_b, each with its ω, text and x_0."""

    x_a: torch.Tensor
    x_b: torch.Tensor
    t: torch.Tensor
    s: torch.Tensor
    omega: torch.Tensor
    tokens: torch.Tensor
    mask: torch.Tensor
    end: torch.Tensor


def draw_pair_jumps(tr: Trajectories, steps: tuple[int, ...], n: int, rng: torch.Generator, dev) -> Jumps:
    """``n`` trajectories drawn uniformly, each with one sampler jump (a, b) from ``draw_jumps``, on ``dev``."""
    i = randint(0, len(tr.omega), (n,), rng, "cpu")
    a, b = draw_jumps(n, steps, tr.steps, rng)
    cap = tr.caption_index[i]
    return Jumps(tr.states[i, a].to(dev), tr.states[i, b].to(dev), tr.grid[a].to(dev), tr.grid[b].to(dev),
                 tr.omega[i].to(dev), tr.tokens[cap].to(dev), tr.mask[cap].to(dev), tr.states[i, -1].to(dev))


def pairs_term(tr: Trajectories, dist, c: CTMConfig, net: str = "net"):
    """c.pairs_weight · d(G(x_a, σ_a, σ_b; ω), x_b) at σ_b on c.pairs_batch drawn jumps (m from c.pairs_steps)."""

    def term(batch, models, step, rng, loss):
        j = draw_pair_jumps(tr, c.pairs_steps, c.pairs_batch, rng, batch["latent"].device)
        out = CTMPrecond(models[net], c.sigma_data)(j.x_a, j.t, j.s, tokens=j.tokens, mask=j.mask, omega=j.omega)
        pair_loss = dist(out, j.x_b, j.s, j.tokens, j.mask).mean()
        return loss + c.pairs_weight * pair_loss, {"train/pairs": pair_loss.detach()}

    return term


# ---- the rollout and its decoded envelope ----

def envelope_distance(levels: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean |levels − target| / 10 dB per clip over frames ``[B, F] → [B]``, both floored ENVELOPE_RANGE_DB below
    the target's loudest frame (silence below that is not compared)."""
    floor = target.amax(-1, keepdim=True) - ENVELOPE_RANGE_DB
    return (torch.maximum(levels, floor) - torch.maximum(target, floor)).abs().mean(-1) / 10.0


def decoded_levels(vae, n_frames: int, power: float):
    """levels(latents): frame levels in dB ``[B, F]`` of the VAE-decoded log-mels (gradients flow through the
    decoder into the latents; the VAE's own weights stay frozen)."""
    def levels(latents):
        if next(vae.parameters()).device != latents.device:  # the trainer places the models, not this decoder
            vae.to(latents.device)
        return mel_frame_levels_db(vae.decode(latents, n_frames), power)

    return levels


def cache_decoder(data):
    """``decoded_levels`` for the latent cache's own VAE (the one its index names encoded its latents)."""
    ix = data.index
    _check(bool(ix.get("vae")) and "mel" in ix and "clip_samples" in ix,
           f"the cache {data.cache_dir} does not record its VAE, mel settings and clip length")
    try:
        vae = AudioVAE.from_pretrained(ix["vae"]).eval().requires_grad_(False)
    except ValueError as err:
        raise ValueError(f"the VAE {ix['vae']!r} that the cache {data.cache_dir} names does not load: {err}") from None
    mel = MelConfig(**ix["mel"])
    return decoded_levels(vae, mel.n_frames(int(ix["clip_samples"])), mel.power)


def rollout_term(tr: Trajectories, dist, c: CTMConfig, levels=None, net: str = "net"):
    """c.rollout_weight · d(sample_ctm(G, x_T, γ = 0; ω), x_0) on c.rollout_batch trajectories: the
    c.rollout_steps-step sampler the pipeline runs (every (M/m)-th σ of the file's M-step grid), with gradients
    through all jumps; with ``levels`` also c.rollout_envelope_weight · envelope_distance of the decoded clips."""
    sig = tr.grid[:: tr.steps // c.rollout_steps]

    def term(batch, models, step, rng, loss):
        j = draw_pair_jumps(tr, (1,), c.rollout_batch, rng, batch["latent"].device)  # (x_T, x_0): the whole path
        out = samplers.sample_ctm(CTMPrecond(models[net], c.sigma_data), j.x_a, sig.to(j.x_a.device), 0.0,
                                  tokens=j.tokens, mask=j.mask, omega=j.omega)
        roll = dist(out, j.x_b, j.s, j.tokens, j.mask).mean()
        logs = {"train/rollout": roll.detach()}
        loss = loss + c.rollout_weight * roll
        if levels is not None:
            with torch.no_grad():
                target = levels(j.x_b)
            env = envelope_distance(levels(out), target).mean()
            logs["train/rollout_envelope"] = env.detach()
            loss = loss + c.rollout_envelope_weight * env
        return loss, logs

    return term


# ---- CTM's GAN term ----

def draw_log_uniform(n: int, lo: float, hi: float, rng: torch.Generator, device) -> torch.Tensor:
    """``n`` noise levels log-uniform in [lo, hi] (all ``lo`` when lo == hi)."""
    return lo * (hi / lo) ** rand(n, rng, device)  # exactly lo when lo == hi


def gan_fakes(g: GANConfig, c: CTMConfig, tr: Trajectories | None, batch, models, rng, net: str = "net"):
    """(fakes, their tokens and mask, reals, their tokens and mask): student samples at σ_min (``g.source``) and
    the reals they are told apart from (``g.real``)."""
    x0, tokens, mask = batch["latent"], batch["tokens"], batch["mask"]
    dev = x0.device
    G = CTMPrecond(models[net], c.sigma_data)
    if g.source == "pairs":  # as many fakes as reals: the discriminator loss adds them per sample
        n = min(g.batch, x0.shape[0])
        j = draw_pair_jumps(tr, c.pairs_steps, n, rng, dev)
        fake = G(j.x_a, j.t, torch.full_like(j.t, c.sigma_min), tokens=j.tokens, mask=j.mask, omega=j.omega)
        if g.real == "teacher":
            return fake, j.tokens, j.mask, j.end, j.tokens, j.mask
        return fake, j.tokens, j.mask, x0[:n], tokens[:n], mask[:n]
    b = x0.shape[0]
    t = torch.full((b,), c.sigma_max, device=dev)
    x_T = randn(x0.shape, rng, dev) * c.sigma_max
    fake = G(x_T, t, torch.full((b,), c.sigma_min, device=dev), tokens=tokens, mask=mask)
    return fake, tokens, mask, x0, tokens, mask


def gan_term(g: GANConfig, c: CTMConfig, features, tr: Trajectories | None = None, net: str = "net",
             disc: str = "disc"):
    """CTM's GAN term: the discriminator ``models[disc]`` sees teacher features of reals and fakes (``gan_fakes``),
    both noised to σ_D from ``g.sigma_range``; the generator's non-saturating loss is weighted by g.weight · the
    adaptive weight against the running loss (ramped over g.ramp_steps); generator and discriminator losses are
    summed, each reaching only its own parameters. For g.disc_warmup steps only the discriminator learns."""
    lo, hi = g.sigma_range

    def term(batch, models, step, rng, loss):
        if step < g.start_step:
            return loss, {}
        warm = step < g.start_step + g.disc_warmup
        dev = batch["latent"].device
        with torch.set_grad_enabled(torch.is_grad_enabled() and not warm):
            fake, f_tokens, f_mask, x0, tokens, mask = gan_fakes(g, c, tr, batch, models, rng, net)
        sd_f, sd_r = draw_log_uniform(fake.shape[0], lo, hi, rng, dev), draw_log_uniform(x0.shape[0], lo, hi, rng, dev)
        eps_f, eps_r = randn(fake.shape, rng, dev), randn(x0.shape, rng, dev)
        noisy_f = fake + append_dims(sd_f, fake.ndim) * eps_f
        with torch.no_grad():
            f_real = features(x0 + append_dims(sd_r, x0.ndim) * eps_r, sd_r, tokens, mask)
            f_fake = features(noisy_f.detach(), sd_f, f_tokens, f_mask)
        logits_real, logits_fake = models[disc](f_real), models[disc](f_fake)
        loss_d = losses.gan_discriminator_loss(logits_real, logits_fake).mean()
        logs = {"train/gan_d": loss_d.detach(),
                "train/gan_acc": losses.gan_discriminator_accuracy(logits_real, logits_fake)}
        if warm:
            return loss + loss_d, logs
        frozen = {k: v.detach() for k, v in models[disc].named_parameters()}
        logits_g = torch.func.functional_call(models[disc], frozen, (features(noisy_f, sd_f, f_tokens, f_mask),))
        loss_g = losses.gan_generator_loss(logits_g).mean()
        lam = losses.adaptive_weight(loss, loss_g, last_layer_weight(models[net]))
        if g.ramp_steps > 0:
            lam = lam * min(1.0, (step - g.start_step - g.disc_warmup) / g.ramp_steps)
        logs.update({"train/gan_g": loss_g.detach(), "train/gan_lambda": lam})
        return loss + g.weight * lam * loss_g + loss_d, logs

    return term


# ---- composition ----

def chain(*terms):
    """The shared loop's ``loss_fn(batch, models, step, rng)``: the terms in order, each adding to the running loss."""

    def loss_fn(batch, models, step, rng):
        loss, logs = terms[0](batch, models, step, rng, None)
        for term in terms[1:]:
            loss, more = term(batch, models, step, rng, loss)
            logs.update(more)
        return loss, logs

    return loss_fn


def soundctm_loss(c: CTMConfig, g: GANConfig, teacher, uncond, ema_decay: float, trajectories=None, levels=None):
    """The recipe's loss: ctm_term, then (with trajectories) pairs_term and rollout_term, then (g.enabled) gan_term.
    ``uncond`` is the cache's unconditional text (``.tokens``, ``.mask``); ``levels`` the rollout's envelope."""
    features = teacher_features(teacher, c.sigma_data)
    terms = [ctm_term(c, uncond.tokens, uncond.mask, ema_decay, distance_fn(c.distance, features))]
    if trajectories is not None:
        pair_dist = distance_fn(c.pairs_distance or c.distance, features)
        terms.append(pairs_term(trajectories, pair_dist, c))
        if c.rollout_steps:
            terms.append(rollout_term(trajectories, pair_dist, c, levels))
    if g.enabled:
        terms.append(gan_term(g, c, features, trajectories))
    return chain(*terms)
