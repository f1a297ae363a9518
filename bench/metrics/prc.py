"""k-NN manifold precision / recall (Kynkäänniemi et al., 2019) and density / coverage (Naeem et al., 2020).

Each set's manifold is approximated by the union of balls centred at its samples, with radius the distance to
the sample's k-th nearest neighbour in the same set (the sample itself excluded). With real samples r_i
(radii ρ_i), generated samples f_j (radii σ_j) and the euclidean distance d:

* precision = fraction of f_j inside some real ball: ∃i d(f_j, r_i) < ρ_i;
* recall    = fraction of r_i inside some generated ball: ∃j d(r_i, f_j) < σ_j;
* density   = 1 / (k M) Σ_j #{i : d(f_j, r_i) < ρ_i} (M generated samples; can exceed 1);
* coverage  = fraction of r_i whose own ball holds a generated sample: min_j d(r_i, f_j) < ρ_i.

The comparisons are strict, as in the reference implementation (the ``prdc`` package, NAVER Corp.); ties only
matter for duplicated points. Distances are computed with :func:`torch.cdist` in float64, in row chunks, so
memory is O(chunk × N) instead of O(N²).
"""

from __future__ import annotations

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from bench.metrics.base import BenchMetric, MetricContext
from bench.metrics.registry import METRICS

PRDC_KEYS: tuple[str, ...] = ("precision", "recall", "density", "coverage")


def knn_radii(x: torch.Tensor, k: int, chunk_size: int = 1024) -> torch.Tensor:
    """Distance from every row of ``x`` (N, D) to its k-th nearest other row, shape (N,), in float64.

    The point itself is excluded (its own distance is set to +inf before the k-th smallest is taken), so a
    duplicate of the point counts as a neighbour at distance 0.
    """
    x = x.double()
    n = len(x)
    if not 1 <= k < n:
        raise ValueError(f"nearest_k must be in [1, N - 1], got k={k} for N={n}")
    radii = torch.empty(n, dtype=torch.float64)
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        dist = torch.cdist(x[start:stop], x)  # (c, N)
        rows = torch.arange(stop - start)
        dist[rows, rows + start] = float("inf")  # exclude self
        radii[start:stop] = dist.kthvalue(k, dim=1).values  # (c,)
    return radii


def prdc(real: torch.Tensor, fake: torch.Tensor, k: int = 3, chunk_size: int = 1024) -> dict[str, torch.Tensor]:
    """Precision, recall, density and coverage of ``fake`` against ``real``, as float64 scalars.

    Args:
        real: (N, D) real features. fake: (M, D) generated features.
        k: Neighbour rank defining the ball radii (k-th nearest other sample of the same set).
        chunk_size: Rows of one distance block; peak extra memory is about chunk_size × max(N, M) float64.

    Returns:
        ``{"precision", "recall", "density", "coverage"}`` → 0-dim float64 tensors.
    """
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"expected (N, D) and (M, D) features, got {tuple(real.shape)} and {tuple(fake.shape)}")
    # A common translation leaves distances unchanged but shrinks the round-off of cdist's ||a||² + ||b||² - 2aᵀb
    # path, which grows with the feature norms (backbone features are far from the origin).
    center = real.double().mean(0)  # (D,)
    real, fake = real.double() - center, fake.double() - center
    real_radii = knn_radii(real, k, chunk_size)  # (N,)
    fake_radii = knn_radii(fake, k, chunk_size)  # (M,)
    n, m = len(real), len(fake)

    # Chunked over real rows, like the real radii: cdist's matmul path is not exactly symmetric (d(a, b) and
    # d(b, a) differ in the last bits), so every comparison with a real radius ρ_i uses the same orientation.
    in_real_balls = torch.zeros(m, dtype=torch.float64)  # per fake: #{i : d(r_i, f_j) < ρ_i}
    recalled = torch.empty(n, dtype=torch.bool)  # per real: ∃j d(r_i, f_j) < σ_j
    covered = torch.empty(n, dtype=torch.bool)  # per real: min_j d(r_i, f_j) < ρ_i
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        dist = torch.cdist(real[start:stop], fake)  # (c, M)
        inside = dist < real_radii[start:stop, None]  # (c, M)
        in_real_balls += inside.sum(0, dtype=torch.float64)
        recalled[start:stop] = (dist < fake_radii[None, :]).any(1)
        covered[start:stop] = inside.any(1)

    return {
        "precision": (in_real_balls > 0).double().mean(),
        "recall": recalled.double().mean(),
        "density": in_real_balls.mean() / k,
        "coverage": covered.double().mean(),
    }


@METRICS.register("prc")
class PRC(BenchMetric, Metric):
    """k-NN precision, recall, density and coverage of backbone features; higher is better for all four.

    Keeps every feature (memory grows with N, like KID); the pairwise distances are computed in chunks.

    Args:
        nearest_k: Neighbour rank k of the ball radii. chunk_size: Rows per distance block.
    """

    input_kind = "features"
    higher_is_better = True
    full_state_update = False

    def __init__(self, nearest_k: int = 3, chunk_size: int = 1024, **kwargs) -> None:
        super().__init__(**kwargs)
        self.nearest_k, self.chunk_size = nearest_k, chunk_size
        self.add_state("real_features", [], dist_reduce_fx="cat")
        self.add_state("fake_features", [], dist_reduce_fx="cat")

    @classmethod
    def build(cls, ctx: MetricContext) -> PRC:
        return cls()

    def update(self, features: torch.Tensor, real: bool) -> None:  # features (N, D)
        (self.real_features if real else self.fake_features).append(features.detach())

    def compute(self) -> dict[str, torch.Tensor]:
        real = dim_zero_cat(self.real_features).double()
        fake = dim_zero_cat(self.fake_features).double()
        return prdc(real, fake, self.nearest_k, self.chunk_size)

    def protocol(self) -> str:
        return f"k={self.nearest_k},euclidean,strict ball (d<radius),radius excludes self,float64"
