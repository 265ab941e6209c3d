"""Measurement operators y = A_φ(x) + n for training-free restoration and guidance.

A ``LinearOperator`` is a matrix ``[m, n]`` acting on samples ``[B, ...]`` flattened to n values, kept with its SVD
A = U diag(s) Vᵀ (DDRM works in that spectral space; Kawar et al. 2022, sec. 3). Builders give the usual
degradations of small signals (an observed subset or mask, block-average down-sampling, Gaussian blur) as dense
matrices; a builder whose parameter φ is a tensor (the blur width) is differentiable in φ, which is what blind
GibbsDDRM updates. Any differentiable callable ``forward(x) -> y`` serves DPS and MPGD, linear or not.
"""

from __future__ import annotations

import math

import torch


class LinearOperator:
    """y = A x on ``[B, *x_shape]`` samples, with A's SVD for spectral-space samplers and the pseudo-inverse."""

    def __init__(self, matrix: torch.Tensor, x_shape: tuple[int, ...]):
        if matrix.ndim != 2 or matrix.shape[1] != math.prod(x_shape):
            raise ValueError(f"matrix must be [m, {math.prod(x_shape)}] for samples of shape {tuple(x_shape)}, got "
                             f"{tuple(matrix.shape)}")
        self.matrix, self.x_shape = matrix, tuple(x_shape)
        U, s, Vh = torch.linalg.svd(matrix.detach().double(), full_matrices=True)
        self.U, self.s, self.V = U.to(matrix.dtype), s.to(matrix.dtype), Vh.T.to(matrix.dtype)

    @property
    def rank(self) -> int:
        """The number of singular values above 1e-6 · the largest."""
        return int((self.s > 1e-6 * self.s.max()).sum())

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """A x: ``[B, *x_shape] → [B, m]``."""
        return x.flatten(1) @ self.matrix.to(x).T

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Aᵀ y: ``[B, m] → [B, *x_shape]``."""
        return (y @ self.matrix.to(y)).reshape(-1, *self.x_shape)

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        """The least-squares, least-norm solution A⁺ y: ``[B, m] → [B, *x_shape]``."""
        r = self.rank
        z = (y @ self.U[:, :r].to(y)) / self.s[:r].to(y)
        return (z @ self.V[:, :r].T.to(y)).reshape(-1, *self.x_shape)

    def to_spectral(self, x: torch.Tensor) -> torch.Tensor:
        """Vᵀ x: ``[B, *x_shape] → [B, n]``."""
        return x.flatten(1) @ self.V.to(x)

    def from_spectral(self, z: torch.Tensor) -> torch.Tensor:
        """V z: ``[B, n] → [B, *x_shape]``."""
        return (z @ self.V.T.to(z)).reshape(-1, *self.x_shape)

    def y_spectral(self, y: torch.Tensor) -> torch.Tensor:
        """ȳ = Σ⁺ Uᵀ y on the first ``rank`` spectral coordinates: ``[B, m] → [B, rank]``."""
        r = self.rank
        return (y @ self.U[:, :r].to(y)) / self.s[:r].to(y)


def select_operator(indices, x_shape: tuple[int, ...]) -> LinearOperator:
    """Observe the flattened coordinates ``indices`` (an inpainting mask keeps its True positions)."""
    n = math.prod(x_shape)
    idx = torch.as_tensor(indices).flatten()
    if idx.dtype == torch.bool:
        idx = torch.nonzero(idx).flatten()
    return LinearOperator(torch.eye(n)[idx], x_shape)


def downsample_operator(x_shape: tuple[int, ...], factor: int) -> LinearOperator:
    """Block averages of ``factor × factor`` pixels per channel (super-resolution's degradation): ``[C, H, W]``."""
    c, h, w = x_shape
    if h % factor or w % factor:
        raise ValueError(f"factor {factor} must divide the image size {h}×{w}")
    rows = []
    for ch in range(c):
        for i in range(0, h, factor):
            for j in range(0, w, factor):
                r = torch.zeros(c, h, w)
                r[ch, i:i + factor, j:j + factor] = 1.0 / factor**2
                rows.append(r.flatten())
    return LinearOperator(torch.stack(rows), x_shape)


def gaussian_blur_matrix(x_shape: tuple[int, ...], width) -> torch.Tensor:
    """The dense matrix of a separable Gaussian blur of std ``width`` pixels (zero padding, rows normalised to the
    full kernel's sum), differentiable in ``width`` when it is a tensor: ``[C·H·W, C·H·W]``."""
    c, h, w = x_shape
    width = torch.as_tensor(width, dtype=torch.float32)

    def axis(size):
        d = torch.arange(size, dtype=torch.float32)
        k = torch.exp(-0.5 * ((d[:, None] - d[None]) / width) ** 2)
        full = torch.exp(-0.5 * (torch.arange(-size + 1, size, dtype=torch.float32) / width) ** 2).sum()
        return k / full

    return torch.kron(torch.eye(c), torch.kron(axis(h), axis(w)))


def blur_operator(x_shape: tuple[int, ...], width) -> LinearOperator:
    """Gaussian blur of std ``width`` pixels (``gaussian_blur_matrix``) as an operator."""
    return LinearOperator(gaussian_blur_matrix(x_shape, width), x_shape)


def measurement_loss(y: torch.Tensor, forward, squared: bool = True):
    """loss(x0) ``[B]``: ‖y − A(x0)‖² (or the norm), the data term of DPS and MPGD."""

    def loss(x0: torch.Tensor) -> torch.Tensor:
        r = (y - forward(x0)).flatten(1).pow(2).sum(1)
        return r if squared else r.sqrt()

    return loss
