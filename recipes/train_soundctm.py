"""Distil a trained teacher into a SoundCTM student G(x, t, s; ω) on a latent cache, on the shared loop.

    accelerate launch recipes/train_soundctm.py --config recipes/configs/soundctm_tiny.yaml [--set key=value ...]

The student starts as a copy of the teacher (plus zero-initialised s and ω embeddings); θ⁻ is the EMA
``train.ema_decays[0]`` (0.999 by default). The loss is ``soundctm.train.tasks.ctm_loss_fn``: CTM's
trajectory loss against the CFG-guided teacher's Heun solve, a distance in the teacher's features (or l2 /
pseudo-Huber), the DSM auxiliary with the adaptive weight, and optionally a GAN term on teacher features.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from soundctm.config import ConfigError, add_config_args, config_from_args
from soundctm.core import losses, samplers, schedule
from soundctm.core.precond import CTMPrecond, edm_scalings
from soundctm.core.utils import append_dims
from soundctm.data.cache import LatentCacheDataset, whole_batch
from soundctm.nn.discriminator import HEADS, FeatureDiscriminator
from soundctm.nn.unet import TextUNet, TwoTimeTextUNet, UNetFeatures, architecture_mismatch
from soundctm.train import TrainConfig, Trainer
from soundctm.train.ema import ema_key
from soundctm.train.tasks import ctm_loss_fn


@dataclass(frozen=True)
class CTMConfig:
    grid_size: int = 18  # CTM's N (SoundCTM used 40; CTM used 18 on CIFAR-10)
    max_k: int | None = 4  # cap on teacher Heun steps per target (cost ∝ k); None = up to N − 1
    k_weighting: str = "linear"  # P(k) ∝ k as SoundCTM, or "uniform"
    omega_min: float = 1.0
    omega_max: float = 5.0
    match: str = "sigma_min"  # compare after mapping both to σ_min with θ⁻ ("s": compare at s)
    distance: str = "teacher_features"  # or "l2", "pseudo_huber"
    dsm_weight: float = 1.0
    caption_dropout: float = 0.1
    sigma_data: float = 0.5
    # optional 1-step term on cached teacher ODE solutions (recipes/teacher_pairs.py): weight·d(G(x_T, T, σ_min; ω),
    # x_0) in the CTM distance, on pairs_batch pairs drawn per step; "" = off (plain CTM)
    pairs_path: str = ""
    pairs_weight: float = 1.0
    pairs_batch: int = 8
    # the pair term's distance: "" = ctm.distance, or teacher_features / l2 / pseudo_huber (l2 keeps loudness: the
    # feature distance unit-normalises every position, so a uniformly fainter jump costs it little)
    pairs_distance: str = ""
    # which sampler jumps the pair term trains: per pair, m is drawn uniformly from pairs_steps and one of the m
    # jumps of the m-step CTM grid (karras_sigmas(m + 1)) is taken on the cached teacher trajectory,
    # d(G(x_a, σ_a, σ_b; ω), x_b) at σ_b; (1,) = the 1-step jump x_T → x_0 alone; m > 1 needs a pairs file written
    # with teacher_pairs.py --path M, m dividing M
    pairs_steps: tuple[int, ...] = (1,)
    # optional rollout term on the same trajectories: the whole γ = 0 CTM sampler of rollout_steps jumps
    # (karras_sigmas(rollout_steps + 1)) from the cached x_T, back-propagated through every jump,
    # rollout_weight·d(sampler(x_T; ω), x_0) at σ_min on rollout_batch trajectories per step. Unlike the pair term
    # (jumps from the teacher's states) it sees the student's own intermediate states, so it trains against the
    # error the sampler compounds; 0 = off. rollout_steps must divide the file's path grid (teacher_pairs.py --path)
    rollout_steps: int = 0
    rollout_weight: float = 1.0
    rollout_batch: int = 4
    # optional envelope term on the rollout (needs rollout_steps): both latents decoded by the cache's VAE to log-mel,
    # envelope_weight · mean over frames of |level(sampler(x_T)) − level(x_0)| / 10 dB, the frame levels (dB of the
    # band power) floored 60 dB below the teacher clip's loudest frame: the loudness contour that event onsets and
    # fades are read from, which a latent or feature distance weighs only indirectly; 0 = off
    rollout_envelope_weight: float = 0.0
    sigma_min: float = 0.002
    sigma_max: float = 80.0


@dataclass(frozen=True)
class GANConfig:
    enabled: bool = False
    weight: float = 1.0  # scaled by the adaptive weight ‖∇L_CTM‖/‖∇L_GAN‖ as in CTM
    start_step: int = 0
    hidden: int = 32
    # where the fakes come from: "noise" = the 1-step jump G(x_T, T, σ_min) at ω = 1 (CTM's term); "pairs" = the
    # jump to σ_min from the start of a sampler jump (ctm.pairs_steps) on a cached guided-teacher trajectory, at
    # that trajectory's ω and caption (needs ctm.pairs_path), so the term reaches the multi-step sampler's states
    source: str = "noise"
    batch: int = 8  # fakes per step for source "pairs", at most train.batch_size (reals: the batch's first as many)
    # the discriminator sees teacher features of real and fake latents noised to σ_D, log-uniform in this range
    # (one σ_D per sample; (0.002, 0.002) = σ_min, effectively clean as in CTM); a larger σ_D hides texture and
    # leaves coarse structure
    sigma_range: tuple[float, float] = (0.002, 0.002)
    # the generator term's weight ramps linearly from 0 over this many steps after start_step while the
    # discriminator already learns (0 = full weight at once): a random discriminator's gradient is noise
    ramp_steps: int = 0
    # steps after start_step in which only the discriminator learns (the generator term is off and its fakes are
    # drawn without gradient), so that the generator meets a discriminator that already tells something apart
    disc_warmup: int = 0
    # the discriminator's heads: "conv" (a small conv per feature level, averaged over positions) or "stats" (an MLP
    # on each level's per-channel mean and log-std, see soundctm.nn.discriminator)
    head: str = "conv"
    # the reals: "data" = cache latents (CTM's term); "teacher" = the x_0 of the same cached guided-teacher
    # trajectories that the fakes jump from (same ω and caption; needs source "pairs"), so the term matches the
    # student's distribution to the teacher's rather than to the data's
    real: str = "data"


@dataclass(frozen=True)
class SoundCTMRecipeConfig:
    train: TrainConfig = field(default_factory=lambda: TrainConfig(out_dir=Path("runs/soundctm_tiny"), lr=5e-5,
                                                                   ema_decays=(0.999,)))
    teacher_dir: str = "soundctm/pretrained/synthcaps-tiny/teacher"
    # warm start: an exported student folder (e.g. the bundle's student/) whose weights replace the teacher copy;
    # optimizer, EMA θ⁻ and step start afresh (a fine-tuning stage, not a resume: resume with train.resume)
    init_student: str = ""
    cache_dir: str = "cache/synthcaps-train"
    ctm: CTMConfig = field(default_factory=CTMConfig)
    gan: GANConfig = field(default_factory=GANConfig)
    export_dir: str = ""  # empty: <out_dir>/student
    threads: int = 0


def teacher_features(teacher: TextUNet, sigma_data: float):
    """features(x, σ, tokens, mask): the frozen teacher UNet's down/mid block outputs at noise level σ."""
    hooks = UNetFeatures(teacher.unet)

    def features(x, sigma, tokens, mask):
        sc = edm_scalings(sigma, sigma_data)
        return hooks.collect(lambda: teacher(append_dims(sc.c_in, x.ndim) * x, sc.c_noise, tokens, mask))

    return features


def draw_log_uniform(n: int, lo: float, hi: float, rng: torch.Generator, device) -> torch.Tensor:
    """``n`` noise levels log-uniform in [lo, hi] (all ``lo`` when lo == hi)."""
    u = torch.rand(n, generator=rng, device=rng.device).to(device)
    return lo * (hi / lo) ** u  # exactly lo when lo == hi


def with_gan(base_loss, features, cfg: SoundCTMRecipeConfig, sigma_data: float, pairs=None, text=None):
    """Add CTM's GAN term: the discriminator sees teacher features of reals (``gan.real``: cache latents, or the
    teacher's solutions of the fakes' own trajectories) and of student samples at σ_min (``gan.source``: 1-step
    from noise, or jumps from cached teacher trajectory states, see GANConfig), both noised to σ_D from
    ``gan.sigma_range``; generator and discriminator losses are summed, each reaching only its own parameters.
    For ``gan.disc_warmup`` steps after ``gan.start_step`` only the discriminator learns."""
    g = cfg.gan
    lo, hi = g.sigma_range

    def loss_fn(batch, models, step, rng):
        loss, logs = base_loss(batch, models, step, rng)
        if step < g.start_step:
            return loss, logs
        warm = step < g.start_step + g.disc_warmup
        x0, tokens, mask = batch["latent"], batch["tokens"], batch["mask"]
        dev = x0.device
        G = CTMPrecond(models["net"], sigma_data)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not warm):
            if g.source == "pairs":  # as many fakes as reals: the discriminator loss adds them per sample
                n = min(g.batch, x0.shape[0])
                x_a, _, t, _, omega, f_tokens, f_mask, end = draw_pair_jumps(pairs, text, cfg.ctm.pairs_steps, n,
                                                                             rng, dev, with_end=True)
                fake = G(x_a, t, torch.full_like(t, cfg.ctm.sigma_min), tokens=f_tokens, mask=f_mask, omega=omega)
                if g.real == "teacher":
                    x0, tokens, mask = end, f_tokens, f_mask
                else:
                    x0, tokens, mask = x0[:n], tokens[:n], mask[:n]
            else:
                b = x0.shape[0]
                t = torch.full((b,), cfg.ctm.sigma_max, device=dev)
                s_min = torch.full((b,), cfg.ctm.sigma_min, device=dev)
                x_T = torch.randn(x0.shape, generator=rng, device=rng.device).to(dev) * cfg.ctm.sigma_max
                fake = G(x_T, t, s_min, tokens=tokens, mask=mask)
                f_tokens, f_mask = tokens, mask
        sd_f = draw_log_uniform(fake.shape[0], lo, hi, rng, dev)
        sd_r = draw_log_uniform(x0.shape[0], lo, hi, rng, dev)
        eps_f = torch.randn(fake.shape, generator=rng, device=rng.device).to(dev)
        eps_r = torch.randn(x0.shape, generator=rng, device=rng.device).to(dev)
        noisy_f = fake + append_dims(sd_f, fake.ndim) * eps_f
        disc = models["disc"]
        with torch.no_grad():
            f_real = features(x0 + append_dims(sd_r, x0.ndim) * eps_r, sd_r, tokens, mask)
            f_fake = features(noisy_f.detach(), sd_f, f_tokens, f_mask)
        logits_real, logits_fake = disc(f_real), disc(f_fake)
        loss_d = losses.gan_discriminator_loss(logits_real, logits_fake).mean()
        logs.update({"train/gan_d": loss_d.detach(),
                     "train/gan_acc": losses.gan_discriminator_accuracy(logits_real, logits_fake)})
        if warm:
            return loss + loss_d, logs
        frozen = {k: v.detach() for k, v in disc.named_parameters()}
        logits_g = torch.func.functional_call(disc, frozen, (features(noisy_f, sd_f, f_tokens, f_mask),))
        loss_g = losses.gan_generator_loss(logits_g).mean()
        from soundctm.train.tasks import last_layer_weight

        lam = losses.adaptive_weight(loss, loss_g, last_layer_weight(models["net"]))
        if g.ramp_steps > 0:
            lam = lam * min(1.0, (step - g.start_step - g.disc_warmup) / g.ramp_steps)
        logs.update({"train/gan_g": loss_g.detach(), "train/gan_lambda": lam})
        return loss + g.weight * lam * loss_g + loss_d, logs

    return loss_fn


def path_states(pairs: dict[str, torch.Tensor], c: CTMConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The cached trajectories as states ``[N, M+1, ...]`` at σ ``[M+1]`` = (σ_max, path σ…, σ_min), x_0 standing
    for the σ_min end as in the 1-step term; checks that every m in ``c.pairs_steps`` divides M."""
    bad = [m for m in c.pairs_steps if m < 1]
    if not c.pairs_steps or bad:
        raise ValueError(f"ctm.pairs_steps must be step counts >= 1, got {c.pairs_steps}")
    inner = pairs.get("path", pairs["x0"][:, None][:, :0])
    inner_sigma = pairs.get("path_sigma", torch.zeros(0))
    M = inner.shape[1] + 1
    if any(M % m for m in c.pairs_steps):
        raise ValueError(f"ctm.pairs_steps {c.pairs_steps} need a pairs file whose path is on a grid of a multiple of "
                         f"each (this file's is {M} steps: write it with teacher_pairs.py --path M)")
    want = schedule.karras_sigmas(M + 1, c.sigma_min, c.sigma_max)[1:-1]
    if inner_sigma.shape != want.shape or not torch.allclose(inner_sigma.float(), want, rtol=1e-4):
        raise ValueError(f"the pairs file's path σ {inner_sigma.tolist()} are not the {M}-step Karras grid between "
                         f"ctm.sigma_max and ctm.sigma_min")
    states = torch.cat([pairs["x_T"][:, None], inner, pairs["x0"][:, None]], 1)
    sigma = torch.cat([torch.tensor([c.sigma_max]), want, torch.tensor([c.sigma_min])])
    return states, sigma


def draw_jumps(n: int, steps: tuple[int, ...], M: int, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random sampler jumps as (start, end) indices on an M-step grid: m uniform over ``steps``, then one of
    the m consecutive jumps of the m-step grid uniformly."""
    if tuple(steps) == (1,):  # the 1-step term alone draws nothing more (runs before pairs_steps reproduce)
        return torch.zeros(n, dtype=torch.long), torch.full((n,), M, dtype=torch.long)
    m = torch.tensor(steps)[torch.randint(0, len(steps), (n,), generator=rng, device=rng.device).cpu()]
    a = (torch.rand(n, generator=rng, device=rng.device).cpu() * m).long().clamp(max=m - 1)
    stride = M // m
    return a * stride, (a + 1) * stride


def draw_pair_jumps(pairs: dict[str, torch.Tensor], text, steps: tuple[int, ...], n: int, rng: torch.Generator,
                    dev, with_end: bool = False) -> tuple[torch.Tensor, ...]:
    """``n`` cached teacher trajectories drawn uniformly, each with one sampler jump (a, b) from ``draw_jumps``:
    (x_a, x_b, σ_a, σ_b, ω, tokens, mask) on ``dev``, and with ``with_end`` each trajectory's x_0 last.
    ``pairs`` as in ``with_teacher_pairs``."""
    states, grid = pairs["states"], pairs["grid"]
    i = torch.randint(0, len(pairs["omega"]), (n,), generator=rng, device=dev).cpu()
    a, b = draw_jumps(n, steps, len(grid) - 1, rng)
    cap = pairs["caption_index"][i]
    out = (states[i, a].to(dev), states[i, b].to(dev), grid[a].to(dev), grid[b].to(dev), pairs["omega"][i].to(dev),
           text.tokens[cap].to(dev), text.mask[cap].to(dev))
    return (*out, states[i, -1].to(dev)) if with_end else out


def with_teacher_pairs(base_loss, pairs: dict[str, torch.Tensor], text, dist, c: CTMConfig):
    """Add c.pairs_weight · d(G(x_a, σ_a, σ_b; ω), x_b) on c.pairs_batch cached teacher trajectories per step,
    (a, b) a jump of the m-step CTM sampler (m from ``c.pairs_steps``; (1,) = x_T → x_0) and
    ``dist(a, b, sigma, tokens, mask)`` the CTM distance at σ_b. ``pairs`` holds ``path_states``' result as
    "states" and "grid" beside the pairs' "omega" and "caption_index"."""

    def loss_fn(batch, models, step, rng):
        loss, logs = base_loss(batch, models, step, rng)
        x_a, x_b, t, s, omega, tokens, mask = draw_pair_jumps(pairs, text, c.pairs_steps, c.pairs_batch, rng,
                                                              batch["latent"].device)
        out = CTMPrecond(models["net"], c.sigma_data)(x_a, t, s, tokens=tokens, mask=mask, omega=omega)
        pair_loss = dist(out, x_b, s, tokens, mask).mean()
        logs["train/pairs"] = pair_loss.detach()
        return loss + c.pairs_weight * pair_loss, logs

    return loss_fn


ENVELOPE_RANGE_DB = 60.0  # frame levels below the teacher clip's loudest frame by more than this are floored


def envelope_distance(levels: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean |levels − target| / 10 dB per clip over frames ``[B, F] → [B]``, both floored ENVELOPE_RANGE_DB below
    the target's loudest frame (silence below that is not compared)."""
    floor = target.amax(-1, keepdim=True) - ENVELOPE_RANGE_DB
    return (torch.maximum(levels, floor) - torch.maximum(target, floor)).abs().mean(-1) / 10.0


def decoded_levels(vae, n_frames: int, power: float):
    """levels(latents): frame levels in dB ``[B, F]`` of the VAE-decoded log-mels (gradients flow through the
    decoder into the latents; the VAE's own weights stay frozen)."""
    from soundctm.audio.mel import mel_frame_levels_db

    def levels(latents):
        if next(vae.parameters()).device != latents.device:  # the trainer places the models, not this decoder
            vae.to(latents.device)
        return mel_frame_levels_db(vae.decode(latents, n_frames), power)

    return levels


def with_rollout(base_loss, pairs: dict[str, torch.Tensor], text, dist, c: CTMConfig, levels=None):
    """Add c.rollout_weight · d(sample_ctm(G, x_T, γ = 0; ω), x_0) on c.rollout_batch cached teacher trajectories per
    step: the m = c.rollout_steps-step sampler the pipeline runs (its σ are every (M/m)-th point of the file's M-step
    Karras grid), with gradients through all m jumps. ``pairs`` and ``dist`` as in ``with_teacher_pairs``. With
    ``levels`` (``decoded_levels``) also c.rollout_envelope_weight · envelope_distance of the decoded clips."""
    grid = pairs["grid"]
    sig = grid[:: (len(grid) - 1) // c.rollout_steps]

    def loss_fn(batch, models, step, rng):
        loss, logs = base_loss(batch, models, step, rng)
        # the whole trajectory (x_T, x_0) is the 1-step draw of draw_pair_jumps
        x_T, x0, _, s, omega, tokens, mask = draw_pair_jumps(pairs, text, (1,), c.rollout_batch, rng,
                                                             batch["latent"].device)
        out = samplers.sample_ctm(CTMPrecond(models["net"], c.sigma_data), x_T, sig.to(x_T.device), 0.0,
                                  tokens=tokens, mask=mask, omega=omega)
        roll = dist(out, x0, s, tokens, mask).mean()
        logs["train/rollout"] = roll.detach()
        loss = loss + c.rollout_weight * roll
        if levels is not None:
            with torch.no_grad():
                target = levels(x0)
            env = envelope_distance(levels(out), target).mean()
            logs["train/rollout_envelope"] = env.detach()
            loss = loss + c.rollout_envelope_weight * env
        return loss, logs

    return loss_fn


def cache_vae(data: LatentCacheDataset):
    """(frozen VAE, mel frames per clip, mel power) of the latent cache: the VAE its index names encoded its
    latents, so it is the one that decodes them."""
    from soundctm.audio.mel import MelConfig
    from soundctm.audio.vae import AudioVAE

    ix = data.index
    if not ix.get("vae") or "mel" not in ix or "clip_samples" not in ix:
        raise ValueError(f"the cache {data.cache_dir} does not record its VAE, mel settings and clip length")
    try:
        vae = AudioVAE.from_pretrained(ix["vae"]).eval().requires_grad_(False)
    except ValueError as err:
        raise ValueError(f"the VAE {ix['vae']!r} that the cache {data.cache_dir} names does not load: {err}") from None
    mel = MelConfig(**ix["mel"])
    return vae, mel.n_frames(int(ix["clip_samples"])), mel.power


def warm_start(net: TwoTimeTextUNet, student_dir: str) -> TwoTimeTextUNet:
    """The exported student in ``student_dir``, checked to have ``net``'s (the teacher copy's) tensor shapes."""
    if not Path(student_dir, "config.json").is_file():
        raise FileNotFoundError(f"init_student {student_dir!r} is not an exported student folder (no config.json)")
    student = TwoTimeTextUNet.from_pretrained(student_dir)
    why = architecture_mismatch(net, student)
    if why:
        raise ValueError(f"init_student {student_dir!r} does not match the teacher's architecture: {why}")
    return student


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="train_soundctm", description=__doc__.splitlines()[0])
    add_config_args(parser)
    try:
        cfg = config_from_args(SoundCTMRecipeConfig, parser.parse_args(argv))
        c = cfg.ctm
        data = LatentCacheDataset(cfg.cache_dir)
        teacher = TextUNet.from_pretrained(cfg.teacher_dir).eval().requires_grad_(False)
        if cfg.ctm.distance not in ("teacher_features", *losses.DISTANCES):
            raise ValueError(f"ctm.distance must be teacher_features, l2 or pseudo_huber, got {cfg.ctm.distance!r}")
        if not cfg.train.ema_decays:
            raise ValueError("train.ema_decays must name the EMA used as the stop-grad target θ⁻")
        net = TwoTimeTextUNet.from_teacher(teacher)
        if cfg.init_student:
            net = warm_start(net, cfg.init_student)
        if c.rollout_steps < 0 or c.rollout_batch < 1 or c.rollout_weight < 0:
            raise ValueError(f"ctm.rollout_steps must be >= 0 (0 = off), ctm.rollout_batch >= 1 and "
                             f"ctm.rollout_weight >= 0, got {c.rollout_steps}, {c.rollout_batch}, {c.rollout_weight}")
        if c.rollout_envelope_weight < 0 or (c.rollout_envelope_weight > 0 and not c.rollout_steps):
            raise ValueError(f"ctm.rollout_envelope_weight must be >= 0 and needs ctm.rollout_steps >= 1, got "
                             f"{c.rollout_envelope_weight} with ctm.rollout_steps {c.rollout_steps}")
        decoder = cache_vae(data) if c.rollout_envelope_weight > 0 else None
        pairs = None
        if cfg.ctm.pairs_path:
            from teacher_pairs import load_pairs

            if not Path(cfg.ctm.pairs_path).is_file():
                raise FileNotFoundError(f"ctm.pairs_path {cfg.ctm.pairs_path!r} does not exist "
                                        "(write it with recipes/teacher_pairs.py)")
            pairs = load_pairs(cfg.ctm.pairs_path)
            if pairs["x_T"].shape[1:] != data.latent(0).shape:
                raise ValueError(f"ctm.pairs_path latents {tuple(pairs['x_T'].shape[1:])} do not match the cache's "
                                 f"{tuple(data.latent(0).shape)}")
            if int(pairs["caption_index"].max()) >= len(data.text.tokens):
                raise ValueError("ctm.pairs_path refers to captions the cache does not have (another cache?)")
            if c.pairs_distance not in ("", "teacher_features", *losses.DISTANCES):
                raise ValueError(f"ctm.pairs_distance must be '', teacher_features, l2 or pseudo_huber, got "
                                 f"{c.pairs_distance!r}")
            if c.pairs_batch < 1 or c.pairs_weight < 0:
                raise ValueError(f"ctm.pairs_batch must be >= 1 and ctm.pairs_weight >= 0, got {c.pairs_batch}, "
                                 f"{c.pairs_weight}")
            states, grid = path_states(pairs, c)
            if c.rollout_steps and (len(grid) - 1) % c.rollout_steps:
                raise ValueError(f"ctm.rollout_steps {c.rollout_steps} must divide the pairs file's path grid of "
                                 f"{len(grid) - 1} steps (write it with teacher_pairs.py --path M)")
            pairs = {"states": states, "grid": grid, **{k: pairs[k] for k in ("omega", "caption_index")}}
        if c.rollout_steps and pairs is None:
            raise ValueError("ctm.rollout_steps needs ctm.pairs_path (cached teacher trajectories)")
        g = cfg.gan
        if g.source not in ("noise", "pairs"):
            raise ValueError(f"gan.source must be noise or pairs, got {g.source!r}")
        if g.enabled and g.source == "pairs" and pairs is None:
            raise ValueError("gan.source=pairs needs ctm.pairs_path (cached teacher trajectories)")
        if g.head not in HEADS:
            raise ValueError(f"gan.head must be one of {HEADS}, got {g.head!r}")
        if g.real not in ("data", "teacher"):
            raise ValueError(f"gan.real must be data or teacher, got {g.real!r}")
        if g.enabled and g.real == "teacher" and g.source != "pairs":
            raise ValueError("gan.real=teacher needs gan.source=pairs (the reals are the fakes' own trajectories)")
        if g.disc_warmup < 0:
            raise ValueError(f"gan.disc_warmup must be >= 0, got {g.disc_warmup}")
        if g.batch < 1 or g.ramp_steps < 0 or not 0 < g.sigma_range[0] <= g.sigma_range[1]:
            raise ValueError(f"gan.batch must be >= 1, gan.ramp_steps >= 0 and gan.sigma_range (lo, hi) with "
                             f"0 < lo <= hi, got {g.batch}, {g.ramp_steps}, {g.sigma_range}")
    except (ConfigError, ValueError, FileNotFoundError) as err:
        print(f"train_soundctm: {err}", file=sys.stderr)
        return 2
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    c = cfg.ctm
    uncond = data.unconditional
    features = teacher_features(teacher, c.sigma_data)
    loss_fn = ctm_loss_fn(uncond.tokens, uncond.mask, c.sigma_data, c.grid_size, c.max_k, c.k_weighting,
                          (c.omega_min, c.omega_max), cfg.train.ema_decays[0], c.match,
                          "l2" if c.distance == "teacher_features" else c.distance, c.dsm_weight,
                          caption_dropout=c.caption_dropout,
                          features=features if c.distance == "teacher_features" else None)
    if pairs is not None:
        pd = c.pairs_distance or c.distance
        if pd == "teacher_features":
            def pair_dist(a, b, sigma, tokens, mask):
                return losses.feature_distance(lambda x, sg: features(x, sg, tokens, mask))(a, b, sigma)
        else:
            def pair_dist(a, b, sigma, tokens, mask):
                return losses.DISTANCES[pd](a, b)
        loss_fn = with_teacher_pairs(loss_fn, pairs, data.text, pair_dist, c)
        if c.rollout_steps:
            levels = decoded_levels(*decoder) if decoder else None
            loss_fn = with_rollout(loss_fn, pairs, data.text, pair_dist, c, levels)
    models = {"net": net, "teacher": teacher}
    trainable = ["net"]
    if cfg.gan.enabled:
        chans = [*teacher.unet.config.block_out_channels, teacher.unet.config.block_out_channels[-1]]
        models["disc"] = FeatureDiscriminator(chans, cfg.gan.hidden, cfg.gan.head)
        trainable.append("disc")
        loss_fn = with_gan(loss_fn, features, cfg, c.sigma_data, pairs, data.text)
    with Trainer(cfg.train, run_config=cfg) as trainer:
        trainer.fit(models, loss_fn, data.batched(), trainable=trainable, collate_fn=whole_batch)
        out = Path(cfg.export_dir) if cfg.export_dir else trainer.out_dir / "student"
        trainer.export(out, "net", data={"cache_dir": cfg.cache_dir, "teacher_dir": cfg.teacher_dir,
                                         "num_samples": len(data)})
    return 0


__all__ = ["ema_key", "main"]

if __name__ == "__main__":
    sys.exit(main())
