"""``mvae-late`` (:class:`~models.fusion.multimodal_vae.LateFusionMVAE`) against MultiVae's MVAE (Agier et al.).

MultiVae's :class:`multivae.models.MVAE` is built on *our* model's modules (shared parameters: its encoders call
``model.expert``, its decoders are ``model.image_decoder`` / ``model.text_decoder``), in eval mode and float64, and
scores one fixed batch. Its own likelihoods are used unchanged: ``"bernoulli"`` (torch's Bernoulli on logits) for the
image, ``"categorical"`` (its one-hot cross entropy, text given as ``{"tokens": ids}``) for the caption. Checked:

* the product-of-experts posteriors q(z | x, w), q(z | x), q(z | w) (with the N(0, I) prior expert), elementwise;
* the joint ELBO terms, reconstruction per modality and the KL of the PoE posterior, on the same posterior draw;
* the whole sub-sampled training objective ``-ELBO(x, w) - ELBO(x) - ELBO(w)`` and each subset's term;
* text→image cross-modal coherence computed by our ``coherence`` metric and by MultiVae's ``CoherenceEvaluator`` on
  the same generations.

Conversions between the two definitions (each one is applied in the test that needs it):

1. KL annealing: MultiVae's MVAE weights the KL by β = (epoch − 1 + batch_ratio) / warmup during the first
   ``warmup`` epochs (β = 0 at epoch 1 with the default warmup 10); ours never anneals, so ``warmup=0`` (β = 1).
2. Text weight λ: ours multiplies log p(w | z) by ``text_weight``; MultiVae's likelihood rescaling does the same with
   ``uses_likelihood_rescaling=True, rescale_factors={"image": 1, "text": λ}``. Rescale factors (1, 0) and (0, 1)
   isolate one modality's reconstruction term in MultiVae's summed ``recon`` metric.
3. Reductions: MultiVae's subset value is (Σ_b [Σ_m rec_m + KL]) / B and its loss the sum over subsets; ours is the
   batch mean of the sum over subsets (same number). MultiVae names the negative ELBO "elbo".
4. Image likelihood: ours is the Bernoulli log-likelihood of [0, 1] pixels (BCE with logits, the gray-level
   surrogate); torch's Bernoulli (MultiVae's) refuses non-binary values, so the batch's images are binary here.
5. Text likelihood: MultiVae adds 1e-6 to every logit before ``log_softmax`` (shift-invariant: a no-op up to
   rounding) and sums one-hot × log-probabilities; ours sums the per-position cross entropy of the ids.
6. Posterior draws: both sides draw ε ~ N(0, I) from the global RNG (ours ``randn_like``, MultiVae
   ``Normal.rsample``, the same CPU stream, asserted below) in the same subset order (joint, image, text), so one
   seed gives both the same z.
7. Coherence: MultiVae reports the *macro* (per-class mean) accuracy of the classifier on the generations
   (``MulticlassAccuracy(average=None)`` then the mean over classes); ours is top-1 (micro) accuracy. They are
   equal on balanced labels; on unbalanced ones MultiVae's number equals our per-class accuracies' mean.
8. MultiVae's ``recon<subset>`` metric: in MultiVae 1.0.3 it aliases the subset's value (``recon = elbo_sub``
   followed by an in-place ``elbo_sub += KLD * beta``), so it includes the KL (measured: ``reconimage_text`` equals
   ``image_text``, 150.477 = 149.220 + KL 1.256). The reconstruction term is read as the subset's value minus
   β·``kld<subset>`` (β = 1), which is right whether or not that aliasing is fixed.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

multivae = pytest.importorskip("multivae", reason="MultiVae (optional reference) is not installed")

from multivae.data.datasets.base import MultimodalBaseDataset  # noqa: E402
from multivae.models import MVAE, MVAEConfig  # noqa: E402
from multivae.models.mvae import mvae_model  # noqa: E402
from pythae.models.base.base_utils import ModelOutput  # noqa: E402
from pythae.models.nn.base_architectures import BaseDecoder, BaseEncoder  # noqa: E402

from bench.features import to_uint8  # noqa: E402
from bench.metrics.cross_modal import Coherence  # noqa: E402
from models import MODELS  # noqa: E402

HPARAMS = {"latent_dim": 4, "width": 8, "d_model": 8, "n_heads": 2, "vocab_size": 32, "text_length": 10}
LAM = 3.0  # text_weight
B = 8
SUBSETS = {"joint": ["image", "text"], "image": ["image"], "text": ["text"]}


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build(seed: int = 0):
    torch.manual_seed(seed)
    return MODELS.get("mvae-late")(**HPARAMS, text_weight=LAM).double().eval()


def binary_batch(b: int = B, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    image = (torch.rand(b, 1, 8, 8, generator=gen) < 0.4).double()  # binary: conversion 4
    return {"image": image, "text": torch.randint(32, (b, 10), generator=gen)}


class _Encoder(BaseEncoder):
    """MultiVae encoder calling our unimodal expert q̃(z | x_m) (no prior: MultiVae's MVAE adds it)."""

    def __init__(self, model, name: str) -> None:
        super().__init__()
        self.model, self.name = model, name

    def forward(self, x):
        ids = x["tokens"] if isinstance(x, dict) else x
        mu, logvar = self.model.expert(self.name, ids)
        return ModelOutput(embedding=mu, log_covariance=logvar)


class _Decoder(BaseDecoder):
    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, z):
        return ModelOutput(reconstruction=self.fn(z))


def reference(model, text_weight: float = LAM, use_subsampling: bool = True) -> MVAE:
    """MultiVae's MVAE on ``model``'s modules, with its own Bernoulli / categorical likelihoods."""
    cfg = MVAEConfig(n_modalities=2, latent_dim=model.latent_dim, uses_likelihood_rescaling=True,
                     rescale_factors={"image": 1.0, "text": text_weight},  # conversion 2
                     decoders_dist={"image": "bernoulli", "text": "categorical"},
                     use_subsampling=use_subsampling, k=0, warmup=0, beta=1.0)  # conversion 1
    ref = MVAE(cfg, encoders={m: _Encoder(model, m) for m in model.modalities},
               decoders={"image": _Decoder(model.image_decoder), "text": _Decoder(model.text_decoder)})
    return ref.eval()


def dataset(batch: dict[str, torch.Tensor], labels: torch.Tensor | None = None) -> MultimodalBaseDataset:
    return MultimodalBaseDataset(data={"image": batch["image"], "text": {"tokens": batch["text"]}}, labels=labels)


def test_global_rng_streams_agree() -> None:
    """Conversion 6: ``randn_like`` (ours) and ``Normal.rsample`` (MultiVae) read the same stream."""
    mu = torch.zeros(B, 4, dtype=torch.float64)
    torch.manual_seed(11)
    ours = torch.randn_like(mu)
    torch.manual_seed(11)
    theirs = torch.distributions.Normal(mu, torch.ones_like(mu)).rsample()
    assert torch.equal(ours, theirs)


def test_poe_posteriors_match_multivae() -> None:
    model, batch = build(), binary_batch()
    ref, inputs = reference(model), dataset(batch)
    with torch.no_grad():
        for name, subset in SUBSETS.items():
            image = batch["image"] if "image" in subset else None
            text = batch["text"] if "text" in subset else None
            mu, logvar = model.encode(image, text)
            ref_mu, ref_logvar = ref.compute_mu_log_var_subset(inputs, subset)
            assert mu.dtype == torch.float64
            torch.testing.assert_close(mu, ref_mu, rtol=1e-12, atol=1e-12, msg=name)
            torch.testing.assert_close(logvar, ref_logvar, rtol=1e-12, atol=1e-12, msg=name)
            assert logvar.max() < 0, f"{name}: the prior expert alone would give log-variance 0"


def test_joint_elbo_terms_match_multivae() -> None:
    """rec_image, rec_text and KL(q(z | x, w) || p) of ``joint_terms`` equal MultiVae's joint-subset values.

    MultiVae sums the rescaled reconstructions of the subset's modalities; factors (1, 0) and (0, 1) give each
    modality's term alone (conversion 2). The same seed gives both the same posterior draw (conversion 6).
    """
    model, batch = build(), binary_batch()
    inputs = dataset(batch)
    with torch.no_grad():
        torch.manual_seed(5)
        ours = model.joint_terms(batch)  # (B,) each
        theirs = {}
        for key, factors in (("rec_image", (1.0, 0.0)), ("rec_text", (0.0, 1.0))):
            ref = reference(model, use_subsampling=False)
            ref.rescale_factors = dict(zip(("image", "text"), factors))
            torch.manual_seed(5)
            metrics = ref(inputs).metrics
            theirs[key] = metrics["image_text"] - metrics["kldimage_text"]  # conversion 8
            theirs["kl"] = metrics["kldimage_text"]
    for key in ("rec_image", "rec_text", "kl"):
        assert ours[key].mean().item() == pytest.approx(theirs[key].item(), rel=1e-10, abs=1e-10), key
    assert ours["kl"].min() > 0 and ours["rec_text"].mean() > 10  # non-degenerate terms


def test_training_objective_matches_multivae_subsampled_elbo() -> None:
    """``training_objective``: loss = Σ over {x, w}, {x}, {w} of the subset's negative ELBO (λ on the text), each
    subset's value, and the joint subset's KL and (λ-weighted) reconstruction, against MultiVae's ``forward``."""
    model, batch = build(), binary_batch()
    ref = reference(model)
    with torch.no_grad():
        torch.manual_seed(7)
        loss, logs = model.training_objective(batch)
        torch.manual_seed(7)
        out = ref(dataset(batch))
    m = out.metrics
    assert loss.item() == pytest.approx(out.loss.item(), rel=1e-10)
    for ours, theirs in (("nelbo_joint", "image_text"), ("nelbo_image", "image"), ("nelbo_text", "text")):
        assert logs[ours].item() == pytest.approx(m[theirs].item(), rel=1e-10), ours
    assert logs["kl"].item() == pytest.approx(m["kldimage_text"].item(), rel=1e-10)
    joint_recon = logs["rec_image"] + LAM * logs["rec_text"]  # MultiVae's recon is λ-rescaled (conversion 2)
    assert joint_recon.item() == pytest.approx((m["image_text"] - m["kldimage_text"]).item(), rel=1e-10)  # conv. 8
    assert all(m["kld" + k] > 0 for k in ("image_text", "image", "text"))
    assert m["beta"] == 1.0
    # the three subsets are distinct numbers (a shared-term bug would make two of them equal)
    values = [m[k].item() for k in ("image_text", "image", "text")]
    assert len({round(v, 6) for v in values}) == 3


class _Classifier(torch.nn.Module):
    """A fixed "classifier backbone" on uint8 images: a random linear map to 4 classes."""

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(3)
        self.weight = torch.nn.Parameter(torch.randn(64, 4, generator=gen, dtype=torch.float64))

    def classify(self, images: torch.Tensor) -> torch.Tensor:  # (B, 1, 8, 8) uint8 -> (B, 4)
        x = images.double().flatten(1) / 255.0
        return (x - x.mean(1, keepdim=True)) @ self.weight

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        """MultiVae feeds the decoder's output (image logits) to the classifier: ours decodes to the mean image,
        quantized to uint8 as every evaluation path does."""
        return self.classify(to_uint8(torch.sigmoid(logits)))


@pytest.mark.parametrize("labels", [
    torch.arange(4).repeat(4),  # balanced: 4 per class
    torch.tensor([0] * 7 + [1] * 5 + [2] * 3 + [3] * 1),  # unbalanced
], ids=["balanced", "unbalanced"])
def test_text_to_image_coherence_matches_multivae(labels: torch.Tensor, monkeypatch: pytest.MonkeyPatch) -> None:
    """Our ``coherence`` metric and MultiVae's ``coherence_from_subset(["text"])`` on the same generations.

    Both draw one z ~ q(z | w) per caption; MultiVae's draw is patched to the ε our ``sample_from_text`` takes from
    its generator (its DataLoader also draws from the global RNG, so a shared seed would not do).
    """
    from multivae.metrics import CoherenceEvaluator, CoherenceEvaluatorConfig

    model, batch = build(), binary_batch(16, seed=1)
    clf = _Classifier()
    eps = torch.randn(16, 4, generator=torch.Generator().manual_seed(9)).double()  # what sample_from_text draws

    def fixed_draw(mu, log_var, N=1, return_mean=False, flatten=False):  # noqa: N803 (MultiVae's signature)
        assert N == 1 and not return_mean
        return mu + eps.to(mu.device) * torch.exp(0.5 * log_var)

    monkeypatch.setattr(mvae_model, "rsample_from_gaussian", fixed_draw)
    with torch.no_grad():
        images = model.sample_from_text(batch["text"], generator=torch.Generator().manual_seed(9))
        logits = clf.classify(to_uint8(images))  # (16, 4)
    coherence = Coherence(num_classes=4)
    coherence.update(logits, labels)
    ours = coherence.compute().item()
    ref = reference(model)
    evaluator = CoherenceEvaluator(
        ref, {"image": clf}, MultimodalBaseDataset(data={"image": batch["image"], "text": batch["text"]},
                                                   labels=labels),
        eval_config=CoherenceEvaluatorConfig(batch_size=16, num_classes=4))
    try:
        with torch.no_grad():
            generated = ref.predict(MultimodalBaseDataset(data={"image": batch["image"], "text": batch["text"]}),
                                    ["text"], ["image"]).image
            acc, _ = evaluator.coherence_from_subset(["text"])
    finally:
        evaluator.finish()
    theirs = float(acc["text_to_image"])
    torch.testing.assert_close(torch.sigmoid(generated), images, rtol=0, atol=1e-12)  # the same generations
    pred = logits.argmax(1)
    per_class = torch.stack([(pred[labels == c] == c).double().mean() for c in range(4)])
    assert theirs == pytest.approx(per_class.mean().item(), abs=1e-6)  # conversion 7: macro accuracy
    if len(set(torch.bincount(labels).tolist())) == 1:
        assert ours == pytest.approx(theirs, abs=1e-6)
    assert 0.0 < ours < 1.0, "a degenerate coherence would not test the comparison"
