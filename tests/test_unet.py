import pytest
import torch
from diffusers import UNet2DConditionModel

from soundctm.core.precond import CTMPrecond, EDMDenoiser
from soundctm.nn.unet import (
    UNET_PRESETS,
    TextUNet,
    TwoTimeTextUNet,
    UNetFeatures,
    VPEpsilonDenoiser,
    architecture_mismatch,
    ddpm_alphas_cumprod,
    load_unet_dir,
    save_unet_dir,
    vp_sigmas,
)

CFG = UNET_PRESETS["debug"]


def batch(b=2):
    x = torch.randn(b, 4, 8, 12)
    tokens = torch.randn(b, 5, 16)
    mask = torch.ones(b, 5, dtype=torch.bool)
    mask[0, 3:] = False
    return x, tokens, mask


def test_student_equals_teacher_at_initialisation_for_any_s_and_omega():
    teacher = TextUNet.from_config(CFG).eval()
    student = TwoTimeTextUNet.from_teacher(teacher).eval()
    D, G = EDMDenoiser(teacher, 0.5), CTMPrecond(student, 0.5)
    x, tokens, mask = batch()
    sigma = torch.tensor([0.3, 5.0])
    with torch.no_grad():
        ref = D(x, sigma, tokens=tokens, mask=mask)
        for s, omega in ((sigma, None), (sigma / 4, torch.tensor([1.0, 4.0]))):
            g = G.g(x, sigma, s, tokens=tokens, mask=mask, omega=omega)
            assert torch.allclose(g, ref, atol=1e-5)
    # after a change to the new projection, s matters
    with torch.no_grad():
        student.unet.time_embedding.cond_proj.weight.normal_()
        g1 = G.g(x, sigma, sigma, tokens=tokens, mask=mask)
        g2 = G.g(x, sigma, sigma / 4, tokens=tokens, mask=mask)
    assert not torch.allclose(g1, g2)


def test_padding_tokens_do_not_matter_under_the_mask():
    teacher = TextUNet.from_config(CFG).eval()
    x, tokens, mask = batch()
    noisy = tokens.clone()
    noisy[0, 3:] = 100.0
    with torch.no_grad():
        a = teacher(x, torch.zeros(2), tokens, mask)
        b = teacher(x, torch.zeros(2), noisy, mask)
    assert torch.allclose(a[0], b[0], atol=1e-5)


def test_save_load_round_trip(tmp_path):
    teacher = TextUNet.from_config(CFG).eval()
    student = TwoTimeTextUNet.from_teacher(teacher).eval()
    with torch.no_grad():
        student.unet.time_embedding.cond_proj.weight.normal_()
    x, tokens, mask = batch()
    for kind, module in (("teacher", teacher), ("student", student)):
        save_unet_dir(module, tmp_path / kind, kind)
        loaded, config = load_unet_dir(tmp_path / kind)
        assert config["kind"] == kind and type(loaded) is type(module)
        args = (x, torch.zeros(2), torch.ones(2)) if kind == "student" else (x, torch.zeros(2))
        with torch.no_grad():
            assert torch.equal(loaded.eval()(*args, tokens, mask), module(*args, tokens, mask))
    with pytest.raises(FileNotFoundError, match="not a model directory"):
        load_unet_dir(tmp_path / "missing")
    assert isinstance(TextUNet.from_pretrained(teacher.save_pretrained(tmp_path / "t2")), TextUNet)
    with pytest.raises(ValueError, match="holds a teacher"):
        TwoTimeTextUNet.from_pretrained(tmp_path / "t2")


def test_audioldm_style_diffusers_unet_loads_and_serves_as_vp_teacher(tmp_path):
    unet = UNet2DConditionModel(**CFG.diffusers_kwargs()).eval()
    unet.save_pretrained(tmp_path / "unet")
    loaded = UNet2DConditionModel.from_pretrained(tmp_path / "unet").eval()
    ac = ddpm_alphas_cumprod()
    D1, D2 = VPEpsilonDenoiser(unet, ac), VPEpsilonDenoiser(loaded, ac)
    x, tokens, mask = batch()
    sigma = torch.tensor([0.5, 3.0])
    with torch.no_grad():
        assert torch.equal(D1(x, sigma, tokens=tokens, mask=mask), D2(x, sigma, tokens=tokens, mask=mask))
    # t(σ) inverts the DDPM table: at σ_t exactly, the timestep is t
    t = torch.tensor([10, 500, 990])
    assert torch.allclose(D1.timestep(vp_sigmas(ac)[t].float()), t.float(), atol=1e-2)


def test_vp_adapter_denoiser_formula():
    class ConstEps(torch.nn.Module):
        def forward(self, x, t, encoder_hidden_states=None, encoder_attention_mask=None):
            return type("O", (), {"sample": torch.ones_like(x)})()

    D = VPEpsilonDenoiser(ConstEps(), ddpm_alphas_cumprod())
    x = torch.randn(2, 4, 3, 3)
    sigma = torch.tensor([0.5, 2.0])
    assert torch.allclose(D(x, sigma, tokens=None), x - sigma[:, None, None, None])


def test_unet_features_are_multi_level():
    teacher = TextUNet.from_config(CFG).eval()
    feats = UNetFeatures(teacher.unet)
    x, tokens, mask = batch()
    with torch.no_grad():
        out = feats.collect(lambda: teacher(x, torch.zeros(2), tokens, mask))
    assert len(out) == 3 and out[0].shape[-2:] == (4, 6) and out[-1].shape[1] == 16


def test_architecture_mismatch_names_the_first_difference():
    """Two students of one config match (different weights do not matter); other channel widths name a tensor and
    both shapes, another time embedding names the attribute, a teacher lacks the student's s/ω projection."""
    from dataclasses import replace

    teacher = TextUNet.from_config(CFG)
    a, b = TwoTimeTextUNet.from_teacher(teacher), TwoTimeTextUNet.from_teacher(teacher)
    with torch.no_grad():
        next(b.parameters()).add_(1.0)
    assert architecture_mismatch(a, b) is None
    wide = TwoTimeTextUNet.from_teacher(TextUNet.from_config(replace(CFG, block_out_channels=(16, 32))))
    why = architecture_mismatch(a, wide)
    assert why is not None and "shape" in why and "expected" in why
    b.noise_scale = 500.0
    assert "noise_scale 500.0" in architecture_mismatch(a, b)
    assert "only one of them" in architecture_mismatch(a, teacher)


def test_feature_hooks_keep_nothing_outside_collect():
    """The teacher-feature hooks record only inside collect: the teacher's other forwards (its guided solve inside the
    CTM target) leave no features behind, and collect returns one map per down block and the mid block."""
    net = TextUNet.from_config(UNET_PRESETS["debug"]).eval()
    hooks = UNetFeatures(net.unet)
    x, tokens = torch.randn(2, 4, 8, 12), torch.randn(2, 5, 16)
    with torch.no_grad():
        for _ in range(3):
            net(x, torch.zeros(2), tokens)
        assert not hooks.feats
        feats = hooks.collect(lambda: net(x, torch.zeros(2), tokens))
        net(x, torch.zeros(2), tokens)
    assert len(feats) == len(net.unet.down_blocks) + 1 and not hooks.feats
