"""Domain-agnostic diffusion / CTM maths. Imports torch only.

Contracts:
- a *denoiser* is any callable ``D(x, sigma, **cond) -> x0_hat`` with x ``[B, ...]`` and sigma ``[B]``;
- a *CTM jump* is any callable ``G(x, t, s, **cond) -> x_s_hat`` with ``G(x, t, t) == x``.
"""

from soundctm.core import fp_loss, fpe, gmm, guidance, likelihood, losses, precond, samplers, schedule, solvers
from soundctm.core.utils import append_dims, as_sigma

__all__ = [
    "append_dims", "as_sigma", "fp_loss", "fpe", "gmm", "guidance", "likelihood", "losses", "precond", "samplers",
    "schedule", "solvers",
]
