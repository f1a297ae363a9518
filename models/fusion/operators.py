"""A registry of multimodal fusion operators (MultiBench ``fusions/`` style), grouped by where they fuse.

Every operator is an ``nn.Module`` built as ``cls(in_dims, out_dim, **options)`` with
``forward(modalities: list[Tensor]) -> Tensor``; ``modalities[i]`` has width ``in_dims[i]``. Two class attributes
tell a caller where the operator goes and what to feed it:

``stage``        ``"early"`` (token level), ``"mid"`` (feature level) or ``"late"`` (decision level);
``input_kind``   ``"tokens"`` (B, T_i, d_i) sequences, ``"pooled"`` (B, d_i) embeddings or ``"logits"`` (B, K).

======================  =====  ==========  ===============================================================
name                    stage  input_kind  output
======================  =====  ==========  ===============================================================
early-concat            early  tokens      (B, ΣT_i, out_dim) tokens for one shared encoder
mid-concat              mid    pooled      (B, out_dim) linear map of the concatenation
mid-sum                 mid    pooled      (B, out_dim) sum of per-modality projections
mid-gated               mid    pooled      (B, out_dim) gated multimodal unit (sigmoid gates)
mid-tensor              mid    pooled      (B, out_dim) Tensor Fusion Network (outer product)
mid-lowrank-tensor      mid    pooled      (B, out_dim) Low-rank Multimodal Fusion (LMF)
mid-attention           mid    pooled      (B, out_dim) softmax-attention over modalities
mid-cross-attention     mid    tokens      (B, out_dim) MulT-style cross-modal attention, pooled
late-average            late   logits      (B, K) average (of probabilities by default)
late-weighted           late   logits      (B, K) learned softmax-weighted average
late-stacking           late   logits      (B, K) linear / MLP meta-learner on the concatenated logits
======================  =====  ==========  ===============================================================

Late operators need ``in_dims == [out_dim] * M`` (every modality predicts the same K = out_dim classes).
Modality-invariance regularisation (:class:`ContrastiveAlignment`, re-exported here) is a separate module that a
classifier adds to its loss with a weight; see :mod:`models.fusion.alignment`.

Example:
    >>> fusion = build_fusion("mid-lowrank-tensor", [32, 32], 16, rank=4)
    >>> fusion([torch.randn(8, 32), torch.randn(8, 32)]).shape
    torch.Size([8, 16])
"""

from __future__ import annotations

import inspect
import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from bench.registry import Registry
from models.fusion.alignment import ContrastiveAlignment, symmetric_info_nce

__all__ = [
    "FUSIONS",
    "STAGES",
    "INPUT_KINDS",
    "FusionOperator",
    "ContrastiveAlignment",
    "symmetric_info_nce",
    "build_fusion",
    "fusion_names",
    "fusion_options",
]

STAGES = ("early", "mid", "late")
INPUT_KINDS = ("tokens", "pooled", "logits")


class FusionOperator(nn.Module):
    """Base class of the registered fusion operators: stores ``in_dims``/``out_dim`` and checks the inputs.

    Subclasses set :attr:`stage` and :attr:`input_kind` and take their options as keyword-only arguments.
    """

    #: Where the operator fuses: "early", "mid" or "late".
    stage: ClassVar[str] = ""
    #: What ``forward`` expects per modality: "tokens" (B, T_i, d_i), "pooled" (B, d_i) or "logits" (B, K).
    input_kind: ClassVar[str] = ""
    #: The smallest number of modalities the operator accepts.
    min_modalities: ClassVar[int] = 1

    def __init__(self, in_dims: list[int], out_dim: int) -> None:
        super().__init__()
        in_dims = [int(d) for d in in_dims]
        if len(in_dims) < self.min_modalities:
            raise ValueError(f"{type(self).__name__} needs at least {self.min_modalities} modalities, got {in_dims}")
        if any(d <= 0 for d in in_dims) or out_dim <= 0:
            raise ValueError(f"dimensions must be positive, got in_dims={in_dims}, out_dim={out_dim}")
        self.in_dims = in_dims
        self.out_dim = int(out_dim)

    @property
    def num_modalities(self) -> int:
        return len(self.in_dims)

    def check_inputs(self, modalities: list[torch.Tensor]) -> None:
        """Raises ValueError unless there is one tensor per modality with the expected rank and width."""
        if len(modalities) != len(self.in_dims):
            raise ValueError(f"{type(self).__name__} expects {len(self.in_dims)} modalities, got {len(modalities)}")
        rank = 3 if self.input_kind == "tokens" else 2
        for i, (x, d) in enumerate(zip(modalities, self.in_dims)):
            if x.dim() != rank or x.shape[-1] != d:
                expected = "(B, T, %d)" % d if rank == 3 else "(B, %d)" % d
                raise ValueError(f"{type(self).__name__}: modality {i} should be {expected}, got {tuple(x.shape)}")
        if len({x.shape[0] for x in modalities}) > 1:
            raise ValueError(f"{type(self).__name__}: batch sizes differ: {[x.shape[0] for x in modalities]}")

    def extra_repr(self) -> str:
        return f"in_dims={self.in_dims}, out_dim={self.out_dim}"


FUSIONS: Registry[type[FusionOperator]] = Registry("fusion operator", base=FusionOperator)


def build_fusion(name: str, in_dims: list[int], out_dim: int, **options: Any) -> FusionOperator:
    """``FUSIONS.get(name)(in_dims, out_dim, **options)``."""
    return FUSIONS.get(name)(in_dims, out_dim, **options)


def fusion_names(stage: str | None = None, input_kind: str | None = None) -> list[str]:
    """Registered names, sorted, optionally only those of one ``stage`` and/or ``input_kind``."""
    if stage is not None and stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; valid stages: {', '.join(STAGES)}")
    if input_kind is not None and input_kind not in INPUT_KINDS:
        raise ValueError(f"unknown input kind {input_kind!r}; valid kinds: {', '.join(INPUT_KINDS)}")
    return [
        name
        for name in FUSIONS.names()
        if (stage is None or FUSIONS.get(name).stage == stage)
        and (input_kind is None or FUSIONS.get(name).input_kind == input_kind)
    ]


def fusion_options(name: str) -> dict[str, Any]:
    """The options of operator ``name`` and their defaults (its keyword-only constructor arguments)."""
    signature = inspect.signature(FUSIONS.get(name).__init__)
    return {p.name: p.default for p in signature.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY}


def _projection(in_dim: int, out_dim: int, project: bool | None) -> nn.Module:
    """``nn.Linear(in_dim, out_dim)``, or ``nn.Identity`` when ``project`` is None (auto) and the widths match."""
    if project is False and in_dim != out_dim:
        raise ValueError(f"project=False needs in_dim == out_dim, got {in_dim} and {out_dim}")
    if project is False or (project is None and in_dim == out_dim):
        return nn.Identity()
    return nn.Linear(in_dim, out_dim)


# ============================================================================================ early (token level)
@FUSIONS.register("early-concat")
class EarlyConcat(FusionOperator):
    """Early fusion: each modality's tokens projected to ``out_dim``, shifted by a learned modality embedding, and
    concatenated along the sequence axis, to be read by one shared encoder.

    ``forward([(B, T_1, d_1), (B, T_2, d_2), ...]) -> (B, T_1 + T_2 + ..., out_dim)``

    Options:
        project: None (default): a ``Linear(d_i, out_dim)`` only for modalities whose width differs from
            ``out_dim`` (identity otherwise, as :class:`~models.fusion.components.EarlyConcatFusion`);
            True: always a linear projection; False: never (all widths must equal ``out_dim``).

    Parameters: the projections plus ``M * out_dim`` for the modality embeddings.
    """

    stage = "early"
    input_kind = "tokens"

    def __init__(self, in_dims: list[int], out_dim: int, *, project: bool | None = None) -> None:
        super().__init__(in_dims, out_dim)
        self.projections = nn.ModuleList(_projection(d, out_dim, project) for d in self.in_dims)
        self.modality = nn.Parameter(torch.zeros(self.num_modalities, out_dim))  # (M, out_dim)
        nn.init.normal_(self.modality, std=0.02)

    def forward(self, modalities: list[torch.Tensor]) -> torch.Tensor:  # [(B, T_i, d_i)] -> (B, ΣT_i, out_dim)
        self.check_inputs(modalities)
        return torch.cat(
            [proj(tokens) + self.modality[i] for i, (proj, tokens) in enumerate(zip(self.projections, modalities))],
            dim=1,
        )


# ========================================================================================= mid (feature level)
@FUSIONS.register("mid-concat")
class MidConcat(FusionOperator):
    """Concatenation of the pooled embeddings followed by one linear layer.

    ``forward([(B, d_1), (B, d_2), ...]) -> (B, out_dim)``; parameters ``(Σd_i + 1) * out_dim``. No options.
    """

    stage = "mid"
    input_kind = "pooled"

    def __init__(self, in_dims: list[int], out_dim: int) -> None:
        super().__init__(in_dims, out_dim)
        self.linear = nn.Linear(sum(self.in_dims), out_dim)

    def forward(self, modalities: list[torch.Tensor]) -> torch.Tensor:  # [(B, d_i)] -> (B, out_dim)
        self.check_inputs(modalities)
        return self.linear(torch.cat(modalities, dim=-1))  # (B, Σd_i) -> (B, out_dim)


@FUSIONS.register("mid-sum")
class MidSum(FusionOperator):
    """Each modality linearly projected to ``out_dim``; the projections summed.

    ``forward([(B, d_1), (B, d_2), ...]) -> (B, out_dim)``; parameters ``Σ(d_i + 1) * out_dim``. No options.
    """

    stage = "mid"
    input_kind = "pooled"

    def __init__(self, in_dims: list[int], out_dim: int) -> None:
        super().__init__(in_dims, out_dim)
        self.projections = nn.ModuleList(nn.Linear(d, out_dim) for d in self.in_dims)

    def forward(self, modalities: list[torch.Tensor]) -> torch.Tensor:  # [(B, d_i)] -> (B, out_dim)
        self.check_inputs(modalities)
        return torch.stack([proj(x) for proj, x in zip(self.projections, modalities)]).sum(0)


@FUSIONS.register("mid-gated")
class MidGated(FusionOperator):
    """Gated multimodal unit (Arevalo et al. 2017, generalised to M modalities; MultiBench's gated fusion).

    ``h_i = act(W_i x_i)``; the gates ``z = sigmoid(W_z [x_1; ...; x_M])`` (B, M, out_dim), computed from *all*
    modalities, weight each projected modality elementwise: ``out = Σ_i z_i ⊙ h_i``.

    ``forward([(B, d_1), (B, d_2), ...]) -> (B, out_dim)``; :meth:`gates` returns z.

    Options:
        activation: "tanh" (default, as the GMU) or "identity" for the projected modalities ``h_i``.

    Parameters: ``Σ(d_i + 1) * out_dim + (Σd_i + 1) * M * out_dim``.
    """

    stage = "mid"
    input_kind = "pooled"

    def __init__(self, in_dims: list[int], out_dim: int, *, activation: str = "tanh") -> None:
        super().__init__(in_dims, out_dim)
        activations = {"tanh": nn.Tanh, "identity": nn.Identity}
        if activation not in activations:
            raise ValueError(f"activation must be one of {sorted(activations)}, got {activation!r}")
        self.projections = nn.ModuleList(nn.Linear(d, out_dim) for d in self.in_dims)
        self.activation = activations[activation]()
        self.gate = nn.Linear(sum(self.in_dims), self.num_modalities * out_dim)

    def gates(self, modalities: list[torch.Tensor]) -> torch.Tensor:  # [(B, d_i)] -> (B, M, out_dim) in (0, 1)
        self.check_inputs(modalities)
        z = torch.sigmoid(self.gate(torch.cat(modalities, dim=-1)))  # (B, M * out_dim)
        return z.view(-1, self.num_modalities, self.out_dim)

    def forward(self, modalities: list[torch.Tensor]) -> torch.Tensor:  # [(B, d_i)] -> (B, out_dim)
        z = self.gates(modalities)  # (B, M, out_dim)
        h = torch.stack([self.activation(proj(x)) for proj, x in zip(self.projections, modalities)], dim=1)
        return (z * h).sum(1)


@FUSIONS.register("mid-tensor")
class MidTensor(FusionOperator):
    """Tensor Fusion Network (Zadeh et al. 2017): the outer product of the ``[h_i; 1]`` vectors, flattened, then a
    linear layer. The appended 1s keep the unimodal terms (and all lower-order interactions) in the product.

    ``forward([(B, d_1), (B, d_2), ...]) -> (B, out_dim)``; :meth:`outer` returns the (B, d_1+1, d_2+1, ...) tensor.

    Options:
        pre_dim: If set, each modality is first projected by ``Linear(d_i, pre_dim)`` (keeps the product small:
            it has ``Π(d_i + 1)`` entries). Default None: no projection.

    Parameters (``pre_dim=None``): ``(Π(d_i + 1) + 1) * out_dim``.
    """

    stage = "mid"
    input_kind = "pooled"

    def __init__(self, in_dims: list[int], out_dim: int, *, pre_dim: int | None = None) -> None:
        super().__init__(in_dims, out_dim)
        if pre_dim is None:
            self.pre = nn.ModuleList(nn.Identity() for _ in self.in_dims)
            dims = self.in_dims
        else:
            self.pre = nn.ModuleList(nn.Linear(d, pre_dim) for d in self.in_dims)
            dims = [pre_dim] * self.num_modalities
        self.tensor_dims = [d + 1 for d in dims]
        self.linear = nn.Linear(math.prod(self.tensor_dims), out_dim)

    def outer(self, modalities: list[torch.Tensor]) -> torch.Tensor:  # [(B, d_i)] -> (B, d_1+1, d_2+1, ...)
        self.check_inputs(modalities)
        z = None
        for pre, x in zip(self.pre, modalities):
            h = pre(x)
            h = torch.cat([h, h.new_ones(h.shape[0], 1)], dim=-1)  # (B, d_i + 1)
            # (B, a_1, ..., a_k) x (B, d_i + 1) -> (B, a_1, ..., a_k, d_i + 1)
            z = h if z is None else z.unsqueeze(-1) * h.view(h.shape[0], *([1] * (z.dim() - 1)), -1)
        return z

    def forward(self, modalities: list[torch.Tensor]) -> torch.Tensor:  # [(B, d_i)] -> (B, out_dim)
        z = self.outer(modalities)
        return self.linear(z.flatten(1))  # (B, Π(d_i + 1)) -> (B, out_dim)


@FUSIONS.register("mid-lowrank-tensor")
class MidLowRankTensor(FusionOperator):
    """Low-rank Multimodal Fusion (Liu et al. 2018): the TFN weight tensor factorised into ``rank`` modality-specific
    factors ``W_i^(r)`` (d_i + 1, out_dim); ``out = Σ_r w_r Π_i ([x_i; 1] W_i^(r)) + b`` (product elementwise).

    Equal to a TFN whose weight is ``Σ_r w_r ⊗_i W_i^(r)``, at a cost linear in the number of modalities.

    ``forward([(B, d_1), (B, d_2), ...]) -> (B, out_dim)``

    Options:
        rank: Rank r of the factorisation (default 4).

    Parameters: ``rank * Σ(d_i + 1) * out_dim + rank + out_dim``.
    """

    stage = "mid"
    input_kind = "pooled"

    def __init__(self, in_dims: list[int], out_dim: int, *, rank: int = 4) -> None:
        super().__init__(in_dims, out_dim)
        if rank < 1:
            raise ValueError(f"rank must be >= 1, got {rank}")
        self.rank = rank
        self.factors = nn.ParameterList(nn.Parameter(torch.empty(rank, d + 1, out_dim)) for d in self.in_dims)
        self.fusion_weights = nn.Parameter(torch.empty(1, rank))
        self.fusion_bias = nn.Parameter(torch.zeros(out_dim))
        for factor in self.factors:  # as the reference implementation
            nn.init.xavier_normal_(factor)
        nn.init.xavier_normal_(self.fusion_weights)

    def forward(self, modalities: list[torch.Tensor]) -> torch.Tensor:  # [(B, d_i)] -> (B, out_dim)
        self.check_inputs(modalities)
        fused = None
        for factor, x in zip(self.factors, modalities):
            x1 = torch.cat([x, x.new_ones(x.shape[0], 1)], dim=-1)  # (B, d_i + 1)
            f = torch.einsum("bd,rdo->bro", x1, factor)  # (B, rank, out_dim)
            fused = f if fused is None else fused * f
        return torch.einsum("r,bro->bo", self.fusion_weights[0], fused) + self.fusion_bias


@FUSIONS.register("mid-attention")
class MidAttention(FusionOperator):
    """Attention over modalities: each modality projected to ``out_dim`` (``h_i``), scored by a learned additive
    scorer ``s_i = v^T tanh(W h_i + b)``, softmax over the M modalities, weighted sum ``Σ_i α_i h_i``.

    ``forward([(B, d_1), (B, d_2), ...]) -> (B, out_dim)``; :meth:`weights` returns α (B, M), rows summing to 1.

    Options:
        attn_dim: Hidden width of the scorer (default None: ``out_dim``).

    Parameters: ``Σ(d_i + 1) * out_dim + (out_dim + 1) * attn_dim + attn_dim``.
    """

    stage = "mid"
    input_kind = "pooled"

    def __init__(self, in_dims: list[int], out_dim: int, *, attn_dim: int | None = None) -> None:
        super().__init__(in_dims, out_dim)
        attn_dim = attn_dim or out_dim
        self.projections = nn.ModuleList(nn.Linear(d, out_dim) for d in self.in_dims)
        self.score = nn.Sequential(nn.Linear(out_dim, attn_dim), nn.Tanh(), nn.Linear(attn_dim, 1, bias=False))

    def _projected(self, modalities: list[torch.Tensor]) -> torch.Tensor:  # -> (B, M, out_dim)
        self.check_inputs(modalities)
        return torch.stack([proj(x) for proj, x in zip(self.projections, modalities)], dim=1)

    def _weights(self, h: torch.Tensor) -> torch.Tensor:  # (B, M, out_dim) -> (B, M)
        return self.score(h).squeeze(-1).softmax(dim=-1)

    def weights(self, modalities: list[torch.Tensor]) -> torch.Tensor:  # [(B, d_i)] -> (B, M), rows sum to 1
        return self._weights(self._projected(modalities))

    def forward(self, modalities: list[torch.Tensor]) -> torch.Tensor:  # [(B, d_i)] -> (B, out_dim)
        h = self._projected(modalities)
        return (self._weights(h).unsqueeze(-1) * h).sum(1)


class CrossAttentionBlock(nn.Module):
    """One pre-norm cross-modal Transformer layer (MulT): the target tokens attend to the source tokens.

    ``forward((B, T_tgt, d) target, (B, T_src, d) source) -> (B, T_tgt, d)``:
    ``x = x + MHA(LN(x), LN(src), LN(src))``; ``x = x + FFN(LN(x))`` with FFN width ``2 d``.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(d_model)
        self.norm_kv = nn.LayerNorm(d_model)
        self.attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.norm_ff = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(
            nn.Linear(d_model, 2 * d_model), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * d_model, d_model)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, target: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        q, kv = self.norm_q(target), self.norm_kv(source)
        x = target + self.dropout(self.attn(q, kv, kv, need_weights=False)[0])
        return x + self.dropout(self.ff(self.norm_ff(x)))


@FUSIONS.register("mid-cross-attention")
class MidCrossAttention(FusionOperator):
    """MulT-style cross-modal attention (Tsai et al. 2019) on **token sequences**.

    Each modality's tokens are projected to ``d_model``; for every ordered pair (source → target) a stack of
    ``n_layers`` :class:`CrossAttentionBlock` s lets the target's tokens attend to the source's tokens. A target's
    stream is the concatenation over its sources, (B, T_tgt, (M - 1) * d_model), layer-normed and mean-pooled over
    time; the pooled streams of all targets are concatenated and linearly mapped to ``out_dim``. Tokens should
    already carry positional information (the fusion tokenizers add learned positions); no padding mask is used.

    ``forward([(B, T_1, d_1), (B, T_2, d_2), ...]) -> (B, out_dim)``; :meth:`streams` returns the per-target streams.

    Options:
        d_model: Attention width (default None: the largest ``d_i`` rounded up to a multiple of ``n_heads``).
            Modalities of that width are not projected.
        n_heads: Attention heads (default 4). n_layers: Cross-attention layers per source → target pair (default 1).
        dropout: Dropout in attention and FFN (default 0.0).
    """

    stage = "mid"
    input_kind = "tokens"
    min_modalities = 2

    def __init__(
        self,
        in_dims: list[int],
        out_dim: int,
        *,
        d_model: int | None = None,
        n_heads: int = 4,
        n_layers: int = 1,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(in_dims, out_dim)
        if d_model is None:
            d_model = n_heads * math.ceil(max(self.in_dims) / n_heads)
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        self.d_model = d_model
        m = self.num_modalities
        self.projections = nn.ModuleList(_projection(d, d_model, None) for d in self.in_dims)
        # blocks[f"{src}_{tgt}"]: the layers through which target tgt attends to source src
        self.blocks = nn.ModuleDict(
            {
                f"{src}_{tgt}": nn.ModuleList(CrossAttentionBlock(d_model, n_heads, dropout) for _ in range(n_layers))
                for tgt in range(m)
                for src in range(m)
                if src != tgt
            }
        )
        self.norms = nn.ModuleList(nn.LayerNorm((m - 1) * d_model) for _ in range(m))
        self.out = nn.Linear(m * (m - 1) * d_model, out_dim)

    def streams(self, modalities: list[torch.Tensor]) -> list[torch.Tensor]:
        """``[(B, T_i, d_i)] -> [(B, T_i, (M - 1) * d_model)]``: each target's tokens after attending to the others."""
        self.check_inputs(modalities)
        tokens = [proj(x) for proj, x in zip(self.projections, modalities)]  # [(B, T_i, d_model)]
        streams = []
        for tgt, norm in enumerate(self.norms):
            per_source = []
            for src in range(self.num_modalities):
                if src == tgt:
                    continue
                x = tokens[tgt]
                for block in self.blocks[f"{src}_{tgt}"]:
                    x = block(x, tokens[src])
                per_source.append(x)
            streams.append(norm(torch.cat(per_source, dim=-1)))
        return streams

    def forward(self, modalities: list[torch.Tensor]) -> torch.Tensor:  # [(B, T_i, d_i)] -> (B, out_dim)
        pooled = [s.mean(dim=1) for s in self.streams(modalities)]  # [(B, (M - 1) * d_model)]
        return self.out(torch.cat(pooled, dim=-1))


# ======================================================================================== late (decision level)
class _LateFusion(FusionOperator):
    """Late operators: every modality gives (B, K) logits with K = out_dim."""

    stage = "late"
    input_kind = "logits"

    def __init__(self, in_dims: list[int], out_dim: int) -> None:
        super().__init__(in_dims, out_dim)
        if any(d != out_dim for d in self.in_dims):
            raise ValueError(
                f"{type(self).__name__}: every modality's logits must have out_dim={out_dim} classes, got {self.in_dims}"
            )


def _check_space(space: str) -> str:
    if space not in ("probs", "logits"):
        raise ValueError(f"space must be 'probs' or 'logits', got {space!r}")
    return space


def _weighted_average(modalities: list[torch.Tensor], weights: torch.Tensor, space: str) -> torch.Tensor:
    """Σ_m w_m logits_m (space "logits") or log Σ_m w_m softmax(logits_m) (space "probs"); w (M,) sums to 1."""
    if space == "logits":
        return torch.einsum("m,mbk->bk", weights, torch.stack(modalities))
    log_probs = torch.stack([F.log_softmax(x, dim=-1) for x in modalities])  # (M, B, K)
    return torch.logsumexp(log_probs + weights.log().view(-1, 1, 1), dim=0)


@FUSIONS.register("late-average")
class LateAverage(_LateFusion):
    """The unweighted mean of the unimodal predictions.

    ``forward([(B, K), (B, K), ...] logits) -> (B, K)``. No parameters.

    Options:
        space: "probs" (default): the log of the mean of the softmaxes, i.e. normalised log-probabilities (as
            MultiBench's late averaging); "logits": the mean of the logits.
    """

    def __init__(self, in_dims: list[int], out_dim: int, *, space: str = "probs") -> None:
        super().__init__(in_dims, out_dim)
        self.space = _check_space(space)

    def forward(self, modalities: list[torch.Tensor]) -> torch.Tensor:  # [(B, K)] -> (B, K)
        self.check_inputs(modalities)
        m = len(modalities)
        return _weighted_average(modalities, modalities[0].new_full((m,), 1.0 / m), self.space)


@FUSIONS.register("late-weighted")
class LateWeighted(_LateFusion):
    """A learned weighted mean of the unimodal predictions; the weights are ``softmax(θ)`` over modalities with
    θ initialised to 0, so at initialisation it equals ``late-average`` in the same ``space``.

    ``forward([(B, K), (B, K), ...] logits) -> (B, K)``; :meth:`weights` returns the (M,) weights. Parameters: M.

    Options:
        space: "probs" (default, returns log-probabilities) or "logits", as for ``late-average``.
    """

    def __init__(self, in_dims: list[int], out_dim: int, *, space: str = "probs") -> None:
        super().__init__(in_dims, out_dim)
        self.space = _check_space(space)
        self.weight_logits = nn.Parameter(torch.zeros(self.num_modalities))  # θ (M,)

    def weights(self) -> torch.Tensor:  # (M,), sums to 1
        return self.weight_logits.softmax(dim=0)

    def forward(self, modalities: list[torch.Tensor]) -> torch.Tensor:  # [(B, K)] -> (B, K)
        self.check_inputs(modalities)
        return _weighted_average(modalities, self.weights(), self.space)


@FUSIONS.register("late-stacking")
class LateStacking(_LateFusion):
    """Stacking: a meta-learner on the concatenated unimodal logits (B, M * K) predicts the fused logits (B, K).

    ``forward([(B, K), (B, K), ...] logits) -> (B, K)`` logits (not normalised).

    Options:
        hidden: 0 (default): one linear layer, initialised to the mean of the logits (weight ``[I/M, ..., I/M]``,
            bias 0), so training starts from averaging; > 0: an MLP ``Linear(M K, hidden) → ReLU → Linear(hidden, K)``
            with PyTorch's default initialisation.

    Parameters: ``(M K + 1) K`` (hidden = 0) or ``(M K + 1) hidden + (hidden + 1) K``.
    """

    def __init__(self, in_dims: list[int], out_dim: int, *, hidden: int = 0) -> None:
        super().__init__(in_dims, out_dim)
        m, k = self.num_modalities, out_dim
        if hidden < 0:
            raise ValueError(f"hidden must be >= 0, got {hidden}")
        if hidden == 0:
            linear = nn.Linear(m * k, k)
            with torch.no_grad():
                linear.weight.copy_(torch.eye(k).repeat(1, m) / m)
                linear.bias.zero_()
            self.meta = linear
        else:
            self.meta = nn.Sequential(nn.Linear(m * k, hidden), nn.ReLU(), nn.Linear(hidden, k))

    def forward(self, modalities: list[torch.Tensor]) -> torch.Tensor:  # [(B, K)] -> (B, K)
        self.check_inputs(modalities)
        return self.meta(torch.cat(modalities, dim=-1))  # (B, M K) -> (B, K)
