import pytest
import torch

from soundctm.core import losses
from soundctm.nn.discriminator import FeatureDiscriminator


def test_stats_head_tells_a_wider_feature_spread_apart_and_ignores_where_it_occurs():
    """The stats head reads per-channel mean and spread only: fakes whose features spread 1.3× wider than the reals'
    are told apart on held-out draws after a short training, and shuffling positions leaves its logits unchanged
    (the conv head's change)."""
    torch.manual_seed(0)
    chans = [4, 8]

    def draw(n, scale):
        return [scale * torch.randn(n, c, 6, 10) + 0.1 for c in chans]

    disc = FeatureDiscriminator(chans, hidden=16, head="stats")
    opt = torch.optim.Adam(disc.parameters(), lr=3e-3)
    for _ in range(150):
        loss = losses.gan_discriminator_loss(disc(draw(16, 1.0)), disc(draw(16, 1.3))).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        real, fake = disc(draw(200, 1.0)).mean(1), disc(draw(200, 1.3)).mean(1)
    acc = 0.5 * ((real > 0).float().mean() + (fake < 0).float().mean())
    assert acc > 0.9
    f = draw(3, 1.0)
    perm = torch.randperm(60)
    shuffled = [x.flatten(2)[..., perm].reshape(x.shape) for x in f]
    with torch.no_grad():
        assert torch.allclose(disc(f), disc(shuffled), atol=1e-5)
        conv = FeatureDiscriminator(chans, hidden=16, head="conv")
        assert conv(f).shape == (3, 2) and not torch.allclose(conv(f), conv(shuffled), atol=1e-5)


def test_discriminator_refuses_an_unknown_head_and_a_wrong_level_count():
    with pytest.raises(ValueError, match="head"):
        FeatureDiscriminator([4], head="mlp")
    with pytest.raises(ValueError, match="feature levels"):
        FeatureDiscriminator([4, 8], head="stats")([torch.randn(2, 4, 3, 3)])
