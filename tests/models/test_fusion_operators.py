"""The fusion operator registry (models/fusion/operators.py) and the contrastive alignment loss (alignment.py)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from models.fusion.alignment import ContrastiveAlignment, symmetric_info_nce
from models.fusion.components import EarlyConcatFusion
from models.fusion.operators import (
    FUSIONS,
    INPUT_KINDS,
    STAGES,
    FusionOperator,
    build_fusion,
    fusion_names,
    fusion_options,
)

B, OUT = 4, 7
DIMS = {2: [6, 5], 3: [6, 5, 4]}


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def in_dims_for(name: str, m: int) -> list[int]:
    """Late operators read (B, K) logits with K = out_dim; the others read modalities of different widths."""
    return [OUT] * m if FUSIONS.get(name).stage == "late" else DIMS[m]


def make_inputs(name: str, in_dims: list[int], batch: int = B, requires_grad: bool = False) -> list[torch.Tensor]:
    """One input per modality of the kind the operator reads; token sequences have different lengths 3, 4, 5."""
    kind = FUSIONS.get(name).input_kind
    shapes = [(batch, 3 + i, d) if kind == "tokens" else (batch, d) for i, d in enumerate(in_dims)]
    return [torch.randn(*s, requires_grad=requires_grad) for s in shapes]


def build(name: str, m: int = 2, **options) -> FusionOperator:
    torch.manual_seed(0)
    return build_fusion(name, in_dims_for(name, m), OUT, **options)


# ------------------------------------------------------------------------------------------------ registry
EXPECTED_STAGES = {
    "early-concat": "early",
    "mid-concat": "mid",
    "mid-sum": "mid",
    "mid-gated": "mid",
    "mid-tensor": "mid",
    "mid-lowrank-tensor": "mid",
    "mid-attention": "mid",
    "mid-cross-attention": "mid",
    "late-average": "late",
    "late-weighted": "late",
    "late-stacking": "late",
}


def test_registry_names_and_stages() -> None:
    assert FUSIONS.names() == sorted(EXPECTED_STAGES)
    assert {name: FUSIONS.get(name).stage for name in FUSIONS.names()} == EXPECTED_STAGES
    for name in FUSIONS.names():
        cls = FUSIONS.get(name)
        assert issubclass(cls, FusionOperator) and cls.stage in STAGES and cls.input_kind in INPUT_KINDS
        assert cls.registry_name == name


def test_listing_by_stage_and_input_kind() -> None:
    assert fusion_names("early") == ["early-concat"]
    assert fusion_names("late") == ["late-average", "late-stacking", "late-weighted"]
    assert fusion_names("mid") == sorted(n for n, s in EXPECTED_STAGES.items() if s == "mid")
    assert fusion_names(input_kind="tokens") == ["early-concat", "mid-cross-attention"]
    assert fusion_names("mid", input_kind="tokens") == ["mid-cross-attention"]
    assert fusion_names(input_kind="logits") == fusion_names("late")
    assert sorted(fusion_names("early") + fusion_names("mid") + fusion_names("late")) == FUSIONS.names()
    with pytest.raises(ValueError, match="stage"):
        fusion_names("middle")


def test_options_are_listed_and_unknown_options_rejected() -> None:
    assert fusion_options("mid-lowrank-tensor") == {"rank": 4}
    assert fusion_options("mid-concat") == {}
    assert set(fusion_options("mid-cross-attention")) == {"d_model", "n_heads", "n_layers", "dropout"}
    with pytest.raises(TypeError):
        build_fusion("mid-concat", [4, 4], 3, rank=2)


# ------------------------------------------------------------------------------------- every operator
@pytest.mark.parametrize("m", [2, 3])
@pytest.mark.parametrize("name", FUSIONS.names())
def test_output_shape(name: str, m: int) -> None:
    fusion = build(name, m)
    inputs = make_inputs(name, in_dims_for(name, m))
    out = fusion(inputs)
    if name == "early-concat":
        assert out.shape == (B, sum(x.shape[1] for x in inputs), OUT)
    else:
        assert out.shape == (B, OUT)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("m", [2, 3])
@pytest.mark.parametrize("name", FUSIONS.names())
def test_gradients_reach_every_modality_and_parameter(name: str, m: int) -> None:
    fusion = build(name, m)
    inputs = make_inputs(name, in_dims_for(name, m), requires_grad=True)
    out = fusion(inputs)
    (out * torch.randn_like(out)).sum().backward()
    for i, x in enumerate(inputs):
        assert x.grad is not None and x.grad.abs().sum() > 0, f"{name}: no gradient reaches modality {i}"
    for pname, p in fusion.named_parameters():
        assert p.grad is not None, f"{name}: parameter {pname} gets no gradient"


@pytest.mark.parametrize("name", FUSIONS.names())
def test_wrong_number_of_modalities_is_rejected(name: str) -> None:
    fusion = build(name, 2)
    with pytest.raises(ValueError, match="modalities"):
        fusion(make_inputs(name, in_dims_for(name, 2))[:1])


# -------------------------------------------------------------------------------------- parameter counts
@pytest.mark.parametrize("m", [2, 3])
def test_parameter_counts(m: int) -> None:
    d, k, r = DIMS[m], OUT, 3
    assert n_params(build("mid-concat", m)) == (sum(d) + 1) * k
    assert n_params(build("mid-sum", m)) == sum(di + 1 for di in d) * k
    assert n_params(build("mid-tensor", m)) == (math.prod(di + 1 for di in d) + 1) * k
    assert n_params(build("mid-lowrank-tensor", m, rank=r)) == r * sum(di + 1 for di in d) * k + r + k
    assert n_params(build("mid-gated", m)) == sum(di + 1 for di in d) * k + (sum(d) + 1) * m * k
    assert n_params(build("mid-attention", m, attn_dim=5)) == sum(di + 1 for di in d) * k + (k + 1) * 5 + 5
    assert n_params(build("late-average", m)) == 0
    assert n_params(build("late-weighted", m)) == m
    assert n_params(build("late-stacking", m)) == (m * k + 1) * k
    assert n_params(build("late-stacking", m, hidden=8)) == (m * k + 1) * 8 + (8 + 1) * k
    # early-concat: a projection only for widths that differ from out_dim, plus one embedding per modality
    assert n_params(build_fusion("early-concat", [OUT, 5], OUT)) == (5 + 1) * OUT + 2 * OUT
    assert n_params(build_fusion("early-concat", [OUT, OUT], OUT)) == 2 * OUT
    assert n_params(build_fusion("early-concat", [OUT, OUT], OUT, project=True)) == 2 * (OUT + 1) * OUT + 2 * OUT


def test_mid_tensor_pre_projection_shrinks_the_product() -> None:
    fusion = build("mid-tensor", 3, pre_dim=2)
    assert fusion.tensor_dims == [3, 3, 3]
    assert n_params(fusion) == sum((di + 1) * 2 for di in DIMS[3]) + (27 + 1) * OUT


# ------------------------------------------------------------------------------------------------- early
def test_early_concat_keeps_each_modality_shifted_by_its_embedding() -> None:
    fusion = build_fusion("early-concat", [OUT, OUT], OUT)
    a, b = torch.randn(B, 3, OUT), torch.randn(B, 5, OUT)
    out = fusion([a, b])
    assert torch.allclose(out[:, :3] - a, fusion.modality[0].expand(B, 3, OUT), atol=1e-6)
    assert torch.allclose(out[:, 3:] - b, fusion.modality[1].expand(B, 5, OUT), atol=1e-6)
    # same computation as the classifiers' EarlyConcatFusion when no projection is needed
    reference = EarlyConcatFusion(2, OUT)
    with torch.no_grad():
        reference.modality.copy_(fusion.modality.view(2, 1, 1, OUT))
    assert torch.allclose(reference([a, b]), out)


def test_early_concat_projects_other_widths() -> None:
    fusion = build_fusion("early-concat", [6, OUT], OUT)
    a, b = torch.randn(B, 3, 6), torch.randn(B, 2, OUT)
    out = fusion([a, b])
    assert torch.allclose(out[:, :3], fusion.projections[0](a) + fusion.modality[0], atol=1e-6)
    with pytest.raises(ValueError, match="project=False"):
        build_fusion("early-concat", [6, OUT], OUT, project=False)


# --------------------------------------------------------------------------------------------------- mid
def test_mid_tensor_contains_the_unimodal_terms() -> None:
    fusion = build("mid-tensor", 2)
    a, b = torch.randn(B, 6), torch.randn(B, 5)
    z = fusion.outer([a, b])  # (B, 7, 6)
    assert z.shape == (B, 7, 6)
    assert torch.allclose(z[:, :6, :5], a[:, :, None] * b[:, None, :])  # bimodal interactions
    assert torch.equal(z[:, :6, 5], a)  # a times b's appended 1
    assert torch.equal(z[:, 6, :5], b)  # b times a's appended 1
    assert torch.equal(z[:, 6, 5], torch.ones(B))  # the constant term
    assert torch.allclose(fusion([a, b]), fusion.linear(z.flatten(1)))


def test_mid_tensor_three_modalities_contains_every_lower_order_term() -> None:
    fusion = build("mid-tensor", 3)
    a, b, c = torch.randn(B, 6), torch.randn(B, 5), torch.randn(B, 4)
    z = fusion.outer([a, b, c])  # (B, 7, 6, 5)
    assert z.shape == (B, 7, 6, 5)
    assert torch.allclose(z[:, :6, 5, 4], a) and torch.allclose(z[:, 6, :5, 4], b) and torch.allclose(z[:, 6, 5, :4], c)
    assert torch.allclose(z[:, :6, :5, 4], a[:, :, None] * b[:, None, :])
    assert torch.allclose(z[:, :6, :5, :4], a[:, :, None, None] * b[:, None, :, None] * c[:, None, None, :])


def test_mid_lowrank_tensor_is_a_tensor_fusion_with_a_low_rank_weight() -> None:
    fusion = build("mid-lowrank-tensor", 2, rank=3)
    a, b = torch.randn(B, 6), torch.randn(B, 5)
    a1, b1 = F.pad(a, (0, 1), value=1.0), F.pad(b, (0, 1), value=1.0)
    z = a1[:, :, None] * b1[:, None, :]  # the TFN outer product (B, 7, 6)
    f_a, f_b = fusion.factors  # (r, 7, K), (r, 6, K)
    weight = torch.einsum("r,rio,rjo->ijo", fusion.fusion_weights[0], f_a, f_b)  # Σ_r w_r W_a^(r) ⊗ W_b^(r)
    expected = torch.einsum("bij,ijo->bo", z, weight) + fusion.fusion_bias
    assert torch.allclose(fusion([a, b]), expected, atol=1e-5)


def test_mid_gated_gates_are_in_unit_interval_and_weight_the_modalities() -> None:
    fusion = build("mid-gated", 3)
    inputs = make_inputs("mid-gated", DIMS[3], batch=32)
    z = fusion.gates(inputs)
    assert z.shape == (32, 3, OUT)
    assert (z > 0).all() and (z < 1).all()
    large = fusion.gates([100 * x for x in inputs])  # saturated (float32 rounds to 0 or 1) but never outside
    assert (large >= 0).all() and (large <= 1).all()
    h = torch.stack([torch.tanh(p(x)) for p, x in zip(fusion.projections, inputs)], dim=1)
    assert torch.allclose(fusion(inputs), (z * h).sum(1), atol=1e-6)
    # the gates depend on every modality
    changed = fusion.gates([inputs[0], inputs[1], torch.randn_like(inputs[2])])
    assert not torch.allclose(changed[:, 0], z[:, 0])


def test_mid_attention_weights_sum_to_one() -> None:
    fusion = build("mid-attention", 3)
    inputs = make_inputs("mid-attention", DIMS[3], batch=16)
    alpha = fusion.weights(inputs)
    assert alpha.shape == (16, 3)
    assert (alpha > 0).all() and torch.allclose(alpha.sum(-1), torch.ones(16))
    h = torch.stack([p(x) for p, x in zip(fusion.projections, inputs)], dim=1)
    assert torch.allclose(fusion(inputs), (alpha[..., None] * h).sum(1), atol=1e-6)


def test_mid_cross_attention_streams_depend_on_the_other_modality() -> None:
    fusion = build("mid-cross-attention", 2).eval()
    a, b = torch.randn(B, 3, 6), torch.randn(B, 4, 5)
    stream_a, stream_b = fusion.streams([a, b])
    assert stream_a.shape == (B, 3, fusion.d_model) and stream_b.shape == (B, 4, fusion.d_model)
    new_a, _ = fusion.streams([a, torch.randn_like(b)])
    assert not torch.allclose(new_a, stream_a), "A's stream ignores modality B"
    _, new_b = fusion.streams([torch.randn_like(a), b])
    assert not torch.allclose(new_b, stream_b), "B's stream ignores modality A"
    assert not torch.allclose(fusion([a, torch.randn_like(b)]), fusion([a, b]))
    # pooled over time: the output does not depend on the order of B's tokens (no positions are added here)
    assert torch.allclose(fusion([a, b.flip(1)]), fusion([a, b]), atol=1e-5)


def test_mid_cross_attention_options() -> None:
    assert build("mid-cross-attention", 2).d_model == 8  # max(6, 5) rounded up to a multiple of 4 heads
    fusion = build_fusion("mid-cross-attention", [8, 8, 8], OUT, n_heads=2, n_layers=2)
    assert fusion.d_model == 8 and len(fusion.blocks) == 6 and all(len(b) == 2 for b in fusion.blocks.values())
    streams = fusion.streams([torch.randn(B, 3, 8), torch.randn(B, 4, 8), torch.randn(B, 5, 8)])
    assert [s.shape for s in streams] == [(B, 3, 16), (B, 4, 16), (B, 5, 16)]
    with pytest.raises(ValueError, match="divisible"):
        build_fusion("mid-cross-attention", [8, 8], OUT, d_model=10, n_heads=4)
    with pytest.raises(ValueError, match="at least 2"):
        build_fusion("mid-cross-attention", [8], OUT)


# -------------------------------------------------------------------------------------------------- late
def test_late_average_equals_the_mean() -> None:
    logits = [torch.randn(B, OUT) for _ in range(3)]
    probs_mean = torch.stack([x.softmax(-1) for x in logits]).mean(0)
    assert torch.allclose(build("late-average", 3)(logits).exp(), probs_mean, atol=1e-6)
    by_hand = torch.log(sum(x.softmax(-1) for x in logits) / 3)  # log of the mean probability
    assert torch.allclose(build("late-average", 3)(logits), by_hand, atol=1e-6)
    for m in (1, 2, 3):  # identical logits: the average is their log-softmax
        assert torch.allclose(build("late-average", m)([logits[0]] * m), F.log_softmax(logits[0], -1), atol=1e-6)
    assert torch.allclose(build("late-average", 3, space="logits")(logits), torch.stack(logits).mean(0), atol=1e-6)
    with pytest.raises(ValueError, match="space"):
        build("late-average", 2, space="votes")


@pytest.mark.parametrize("space", ["probs", "logits"])
def test_late_weighted_at_init_equals_the_average(space: str) -> None:
    fusion = build("late-weighted", 3, space=space)
    logits = [torch.randn(B, OUT) for _ in range(3)]
    assert torch.allclose(fusion.weights(), torch.full((3,), 1 / 3))
    assert torch.allclose(fusion(logits), build("late-average", 3, space=space)(logits), atol=1e-6)
    with torch.no_grad():
        fusion.weight_logits.copy_(torch.tensor([0.0, 0.0, 50.0]))  # all weight on the third modality
    expected = F.log_softmax(logits[2], -1) if space == "probs" else logits[2]
    assert torch.allclose(fusion(logits), expected, atol=1e-4)


def test_late_stacking_starts_as_the_mean_of_logits() -> None:
    logits = [torch.randn(B, OUT) for _ in range(3)]
    assert torch.allclose(build("late-stacking", 3)(logits), torch.stack(logits).mean(0), atol=1e-6)
    mlp = build("late-stacking", 3, hidden=8)
    assert mlp(logits).shape == (B, OUT)


def test_late_operators_need_logits_of_out_dim_classes() -> None:
    for name in fusion_names("late"):
        with pytest.raises(ValueError, match="out_dim"):
            build_fusion(name, [OUT, OUT + 1], OUT)


# ------------------------------------------------------------------------------------ contrastive alignment
def test_alignment_loss_is_lower_for_aligned_pairs_than_shuffled() -> None:
    torch.manual_seed(0)
    align = ContrastiveAlignment([6, 6], proj_dim=8, temperature=0.1)
    with torch.no_grad():  # one shared projection, so identical inputs map to identical embeddings
        align.projections[1].load_state_dict(align.projections[0].state_dict())
    a = torch.randn(16, 6)
    b = a + 0.05 * torch.randn(16, 6)
    aligned = align([a, b])
    shuffled = align([a, b[torch.randperm(16)]])
    assert aligned < shuffled
    assert aligned < math.log(16) < shuffled + 1.0


def test_alignment_loss_of_identical_constant_embeddings_is_log_batch() -> None:
    align = ContrastiveAlignment([6, 5], proj_dim=8)
    for batch in (2, 8, 32):
        loss = align([torch.ones(batch, 6), torch.full((batch, 5), 3.0)])
        assert torch.allclose(loss, torch.tensor(math.log(batch)), atol=1e-5)


def test_symmetric_info_nce() -> None:
    z = F.normalize(torch.randn(8, 4), dim=-1)
    perm = torch.randperm(8)
    loss = symmetric_info_nce(z, z[perm], 0.5)
    logits = z @ z[perm].T / 0.5
    expected = (F.cross_entropy(logits, torch.arange(8)) + F.cross_entropy(logits.T, torch.arange(8))) / 2
    assert torch.allclose(loss, expected)
    assert torch.allclose(symmetric_info_nce(z, z[perm], 0.5), symmetric_info_nce(z[perm], z, 0.5))  # symmetric


def test_alignment_averages_over_modality_pairs() -> None:
    torch.manual_seed(0)
    align = ContrastiveAlignment([6, 5, 4], proj_dim=8, temperature=0.2)
    x = [torch.randn(8, d) for d in (6, 5, 4)]
    z = align.project(x)
    assert all(torch.allclose(zi.norm(dim=-1), torch.ones(8)) for zi in z)
    pairs = [symmetric_info_nce(z[i], z[j], 0.2) for i, j in ((0, 1), (0, 2), (1, 2))]
    assert torch.allclose(align(x), torch.stack(pairs).mean(), atol=1e-5)
    with pytest.raises(ValueError, match="two modalities"):
        ContrastiveAlignment([6], proj_dim=8)


def test_alignment_training_aligns_related_modalities() -> None:
    torch.manual_seed(0)
    align = ContrastiveAlignment([6, 5], proj_dim=8, temperature=0.1, learn_temperature=True)
    assert torch.allclose(align.temperature, torch.tensor(0.1))
    mix = torch.randn(6, 5)
    optimizer = torch.optim.Adam(align.parameters(), lr=0.05)

    def batch() -> list[torch.Tensor]:
        a = torch.randn(32, 6)
        return [a, a @ mix + 0.01 * torch.randn(32, 5)]

    with torch.no_grad():
        before = torch.stack([align(batch()) for _ in range(5)]).mean()
    for _ in range(25):
        optimizer.zero_grad()
        align(batch()).backward()
        optimizer.step()
    with torch.no_grad():
        after = torch.stack([align(batch()) for _ in range(5)]).mean()
    assert after < 0.5 * before
    assert align.log_logit_scale.grad is not None  # the temperature is learned
