import numpy as np
import pytest
import scipy.linalg

from soundctm.metrics.frechet import (
    GaussianStats,
    bootstrap_fd,
    fd_infinity,
    fit_gaussian,
    fit_inverse_n_line,
    frechet_distance,
    frechet_distance_of_embeddings,
    sqrtm_psd,
)


def random_spd(rng, d):
    a = rng.standard_normal((d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def stats(mu, sigma):
    return GaussianStats(mu=np.asarray(mu, float), sigma=np.asarray(sigma, float), n=100)


def test_fd_of_a_set_with_itself_is_zero():
    x = np.random.default_rng(0).standard_normal((200, 16))
    assert frechet_distance_of_embeddings(x, x) == pytest.approx(0.0, abs=1e-8)


def test_mean_shift_adds_squared_norm():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 8))
    delta = rng.standard_normal(8)
    assert frechet_distance_of_embeddings(x, x + delta) == pytest.approx(np.sum(delta**2), rel=1e-9)


def test_diagonal_gaussians_closed_form():
    rng = np.random.default_rng(2)
    a, b = rng.uniform(0.1, 3.0, 10), rng.uniform(0.1, 3.0, 10)
    mu1, mu2 = rng.standard_normal(10), rng.standard_normal(10)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(stats(mu1, np.diag(a)), stats(mu2, np.diag(b))) == pytest.approx(expected, rel=1e-10)


def test_non_diagonal_2d_matches_scipy_sqrtm_reference():
    s1 = np.array([[2.0, 0.8], [0.8, 1.0]])
    s2 = np.array([[1.0, -0.3], [-0.3, 0.5]])
    mu1, mu2 = np.array([0.5, -1.0]), np.array([0.0, 0.2])
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean)
    assert frechet_distance(stats(mu1, s1), stats(mu2, s2)) == pytest.approx(expected, rel=1e-10)


def test_random_16d_case_matches_scipy_sqrtm_reference():
    rng = np.random.default_rng(11)
    s1, s2 = random_spd(rng, 16), random_spd(rng, 16)
    mu1, mu2 = rng.standard_normal(16), rng.standard_normal(16)
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance(stats(mu1, s1), stats(mu2, s2)) == pytest.approx(expected, rel=1e-8)


def test_sqrtm_psd_squares_back_and_tolerates_singular_input():
    rng = np.random.default_rng(3)
    s = random_spd(rng, 6)
    r = sqrtm_psd(s)
    np.testing.assert_allclose(r @ r, s, atol=1e-10)
    np.testing.assert_allclose(r, r.T, atol=1e-12)
    v = rng.standard_normal((6, 2))
    singular = v @ v.T  # rank 2, eigenvalues ~ -1e-16 from round-off
    r = sqrtm_psd(singular)
    assert np.all(np.isfinite(r))
    np.testing.assert_allclose(r @ r, singular, atol=1e-8)


def test_rank_deficient_covariances_give_finite_nonnegative_fd():
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((10, 64)), rng.standard_normal((12, 64))  # N < D: singular covariances
    fd = frechet_distance_of_embeddings(x, y)
    assert np.isfinite(fd) and fd >= 0


def test_permutation_invariance_and_symmetry():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((150, 12))
    y = rng.standard_normal((170, 12)) @ random_spd(rng, 12) + 0.5
    fd = frechet_distance_of_embeddings(x, y)
    assert frechet_distance_of_embeddings(x[rng.permutation(150)], y[rng.permutation(170)]) == pytest.approx(fd)
    assert frechet_distance_of_embeddings(y, x) == pytest.approx(fd, rel=1e-9)


def test_fit_gaussian_matches_numpy_and_stats_roundtrip(tmp_path):
    x = np.random.default_rng(6).standard_normal((50, 3))
    g = fit_gaussian(x)
    np.testing.assert_allclose(g.mu, x.mean(0))
    np.testing.assert_allclose(g.sigma, np.cov(x.T))
    assert g.n == 50
    g.save(tmp_path / "ref.npz")
    back = GaussianStats.load(tmp_path / "ref.npz")
    np.testing.assert_array_equal(back.mu, g.mu)
    np.testing.assert_array_equal(back.sigma, g.sigma)
    assert back.n == 50


def test_bad_inputs_raise_value_errors():
    with pytest.raises(ValueError, match="x must be a 2-D"):
        frechet_distance_of_embeddings(np.zeros(5), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="dims differ"):
        frechet_distance_of_embeddings(np.zeros((5, 2)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="sizes"):
        fd_infinity(np.zeros((10, 2)), np.zeros((10, 2)), sizes=[5, 20])
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_fd(np.zeros((10, 2)), np.zeros((10, 2)), confidence=1.5)


def test_inverse_n_line_fit_recovers_exact_line():
    sizes = np.array([10, 20, 50, 100])
    intercept, slope = fit_inverse_n_line(sizes, 3.0 + 40.0 / sizes)
    assert intercept == pytest.approx(3.0) and slope == pytest.approx(40.0)


def test_same_gaussian_fd_is_pure_one_over_n_bias():
    rng = np.random.default_rng(7)
    x, y = rng.standard_normal((4000, 8)), rng.standard_normal((4000, 8))
    r = fd_infinity(x, y, sizes=[50, 100, 200, 400], draws=50, seed=0)
    k = r.fds * r.sizes
    assert r.slope > 0
    assert np.all(np.abs(k / k.mean() - 1) < 0.15)  # FD(n) ≈ k / n
    # The mean term alone contributes 2 tr(Σ)/n = 16/n, the covariance term adds more.
    assert k.mean() > 16
    assert abs(r.fd_inf) < 0.4 * r.fds.min()


def test_fd_infinity_intercept_recovers_true_fd_between_different_gaussians():
    rng = np.random.default_rng(8)
    a, b = np.linspace(0.5, 2.0, 4), np.linspace(1.0, 3.0, 4)
    x = rng.standard_normal((20000, 4)) * np.sqrt(a)
    y = rng.standard_normal((20000, 4)) * np.sqrt(b) + 0.3
    true_fd = np.sum((np.sqrt(a) - np.sqrt(b)) ** 2) + 4 * 0.09
    r = fd_infinity(x, y, sizes=[50, 100, 200, 400], draws=30, seed=0)
    assert r.fd_inf == pytest.approx(true_fd, abs=0.15)
    assert r.fds[0] > true_fd + 0.1  # small samples are visibly biased upwards


def test_fd_infinity_with_fixed_reference_statistics():
    rng = np.random.default_rng(9)
    x, y = rng.standard_normal((5000, 4)), rng.standard_normal((2000, 4)) + 1.0
    r = fd_infinity(x, y, sizes=[50, 100, 200, 400], draws=20, subsample_reference=False)
    assert r.fd_inf == pytest.approx(4.0, abs=0.2)


def test_bootstrap_interval_brackets_estimate_and_true_value():
    rng = np.random.default_rng(10)
    x, y = rng.standard_normal((400, 3)), rng.standard_normal((400, 3)) + np.array([1.0, 0.0, 0.0])
    r = bootstrap_fd(x, y, n_boot=100, confidence=0.99, seed=0)
    assert r.low <= r.fd <= r.high
    assert r.low < 1.0 < r.high  # true FD = 1
    assert len(r.samples) == 100 and r.high - r.low < 1.0
