import pytest
import torch

from benchmarks import feature_probe as probe


def test_probe_tells_shifted_gaussians_apart_and_not_identical_ones():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(400, 10, generator=g)
    shifted = torch.randn(400, 10, generator=g) + 0.6 * torch.ones(10) / 10**0.5 * 3
    same = torch.randn(400, 10, generator=g)
    # means 1.9 apart along one direction: the Bayes accuracy is Φ(0.95) ≈ 0.83
    assert probe.probe_accuracy(a, shifted) > 0.75
    assert abs(probe.probe_accuracy(a, same) - 0.5) < 0.08


def test_probe_keeps_pairs_on_one_side_of_the_split():
    """b = a + small noise in more dimensions than rows: the probe can memorise its training rows, so a row whose
    partner it trained on (with the other label) is scored wrong. Kept together, pairs leave it at chance; with
    the partners shuffled apart, the same data reads far below chance."""
    g = torch.Generator().manual_seed(1)
    a = torch.randn(100, 400, generator=g)
    b = a + 0.05 * torch.randn(100, 400, generator=g)
    assert abs(probe.probe_accuracy(a, b) - 0.5) < 0.1
    assert probe.probe_accuracy(a, b[torch.randperm(100, generator=g)]) < 0.4


def test_probe_refuses_mismatched_sets():
    with pytest.raises(ValueError, match="a and b"):
        probe.probe_accuracy(torch.zeros(10, 3), torch.zeros(9, 3))


def test_online_discriminator_learns_a_spread_difference_and_reads_chance_on_identical_sets():
    """The recipe's stats head trained online tells feature maps spread 2× wider apart (> 0.8 held out after 200
    steps) and reads identical distributions near chance; mismatched levels are refused."""
    g = torch.Generator().manual_seed(2)
    chans = [3, 5]

    def levels(scale):
        return [scale * torch.randn(200, c, 4, 6, generator=g) for c in chans]

    real = levels(1.0)
    acc = probe.online_accuracy(real, levels(2.0), chans, "stats", checkpoints=(50, 200), lr=3e-3)
    assert set(acc) == {50, 200} and acc[200] > 0.8
    assert abs(probe.online_accuracy(real, levels(1.0), chans, "stats", checkpoints=(200,), lr=3e-3)[200] - 0.5) < 0.1
    with pytest.raises(ValueError, match="a and b"):
        probe.online_accuracy(real, levels(1.0)[:1], chans)
