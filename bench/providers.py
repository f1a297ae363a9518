"""Providers: answer the requests of a unit's metrics (:mod:`bench.metrics.requests`), each distinct one once.

What is scored is a *subject*: a trained model on a datamodule (:class:`ModelSubject`, ``bench run``) or two
image sets (:class:`ImageSetSubject`, ``bench eval``). A subject says which image sources it has and produces
their images; everything downstream — backbone features and logits, caption similarities, classifier logits — is
the same code for both, so ``bench eval`` on a model's samples and ``bench run`` on the model give the same
numbers under the same protocol.

:class:`UnitInputs` memoizes every answer by (request, backbone), so a feature set is computed once per unit
however many metrics ask for it, and runs *one* pass over the images of a source for all the backbones that
source is asked of (a model's samples are drawn once, batch by batch, and every backbone sees each batch once).
Real-split features go through the verified on-disk cache (:func:`bench.features.cached_real_features`).

The ``joint`` source (a model's unconditional image + caption samples, :func:`sample_joint_pairs`) is drawn once per
unit; its captions, and the reference split's (``joint-real``), are read into the labels they allow by the
datamodule (``dm.caption_label_sets``, :func:`require_caption_label_sets`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from bench.backbones.base import FeatureBackbone
from bench.corruptions import add_noise, drop_modality
from bench.errors import InputError
from bench.features import cached_real_features, iter_batches, progress, real_cache_key, to_uint8
from bench.metrics import requests as rq
from bench.metrics.cross_modal import _device, caption_similarities, classifier_logits
from bench.metrics.joint_coherence import CaptionLabels, JointSampler
from bench.metrics.robustness import conditions
from bench.spec import EvalSpec
from models.base import AutoEncoder, Classifier, ImageGenerator, LikelihoodModel, TextToImageGenerator

#: A backbone with its outputs asked of one source: (backbone, with logits).
_Pass = tuple[FeatureBackbone, bool]
#: Sources of real reference examples whose outputs are the same for every unit of a track (computed once).
_REFERENCE_SOURCES = ("conditional-real", "joint-real")


@dataclass
class LikelihoodAnswer:
    """The answer to :class:`~bench.metrics.requests.Likelihoods`: per-image NLL (nats) batches and what they are."""

    nll: list[torch.Tensor]  # [(B,)]
    num_dims: int
    likelihood: str
    bound: str


class Subject:
    """What a unit scores: the image sources it has and the model outputs it can produce."""

    #: Names the subject in error messages.
    description: str = "subject"

    def sources(self) -> frozenset[str]:
        """The image sources (``real``, ``fake``, ``train``, ``conditional``, ``conditional-real``) it has."""
        raise NotImplementedError

    def can_answer(self, request: rq.Request) -> bool:
        """Whether the request can be answered for this subject (the metric applies)."""
        source = getattr(request, "source", None)
        if source is not None:
            if isinstance(request, rq.Labels) and source == "fake":
                return False
            return source in self.sources()
        return False

    def images(self, source: str) -> torch.Tensor | None:
        """(N, C, H, W) uint8 images of ``source`` when it is held in memory; None for a streamed source."""
        raise NotImplementedError

    def stream(self, source: str, batch_size: int) -> tuple[Iterator[torch.Tensor], int]:
        """Batches of (B, C, H, W) uint8 images of ``source`` and their total count."""
        images = self.images(source)
        assert images is not None
        return iter_batches(images, batch_size), len(images)

    def cache_key(self, source: str, backbone: FeatureBackbone) -> str | None:
        """Key of ``source``'s features in the real-feature cache (None: never cached)."""
        return None

    def labels(self, source: str) -> torch.Tensor:
        raise NotImplementedError(f"{self.description} has no labels for {source!r}")

    def captions(self, source: str) -> list[str]:
        raise NotImplementedError(f"{self.description} has no captions for {source!r}")

    def caption_labels(self, source: str) -> CaptionLabels:
        """The labels each caption of ``source`` allows (``joint``, ``joint-real``)."""
        raise NotImplementedError(f"{self.description} has no captions for {source!r}")


def require_caption_label_sets(dm: Any) -> Callable[[torch.Tensor], list]:
    """The datamodule's caption parser ``caption_label_sets(text_ids (N, L)) -> N label sets or None`` (what
    ``joint-coherence`` and ``joint-coherence-real`` read captions with).

    Raises:
        InputError: One line naming the metric and the datamodule, when it has none.
    """
    parse = getattr(dm, "caption_label_sets", None)
    if not callable(parse):
        raise InputError(f"joint-coherence needs the datamodule to read captions as labels "
                         f"(caption_label_sets(text_ids)); datamodule {getattr(dm, 'registry_name', dm)!r} has none "
                         f"(captioned-digits has one)")
    return parse


class ModelSubject(Subject):
    """A model on a datamodule: ``real``/``train`` are the datamodule's splits, ``fake`` the model's samples.

    Args:
        model: The trained model (eval mode). dm: Its datamodule. spec: The track's evaluation settings.
        seed: The unit's seed (sampling, posterior samples).
    """

    def __init__(self, model: Any, dm: Any, spec: EvalSpec, seed: int) -> None:
        self.model, self.dm, self.spec, self.seed = model, dm, spec, seed
        self.description = f"model {getattr(model, 'registry_name', type(model).__name__)}"
        self._tensors: dict[str, dict[str, torch.Tensor]] = {}

    def tensors(self, split: str) -> dict[str, torch.Tensor]:
        if split not in self._tensors:
            self._tensors[split] = self.dm.split_tensors(split)
        return self._tensors[split]

    def sources(self) -> frozenset[str]:
        out = {"real", "train"}
        if isinstance(self.model, ImageGenerator):
            out.add("fake")
        if isinstance(self.model, TextToImageGenerator):
            out |= {"conditional", "conditional-real"}
        if isinstance(self.model, JointSampler):
            out |= {"joint", "joint-real"}
        return frozenset(out)

    def can_answer(self, request: rq.Request) -> bool:
        if isinstance(request, rq.Reconstructions):
            return isinstance(self.model, AutoEncoder)
        if isinstance(request, rq.ClassifierPredictions):
            return isinstance(self.model, Classifier)
        if isinstance(request, rq.Likelihoods):
            return isinstance(self.model, LikelihoodModel)
        return super().can_answer(request)

    def conditional_count(self) -> int:
        """How many reference examples the caption-conditioned sources use: the first ``n_fake`` (all when fewer,
        or when ``n_fake`` is 0)."""
        n = len(self.tensors(self.spec.real_split)["label"])
        return min(self.spec.n_fake, n) if self.spec.n_fake > 0 else n

    def _split_of(self, source: str) -> str:
        return "train" if source == "train" else self.spec.real_split

    def images(self, source: str) -> torch.Tensor | None:
        if source in ("real", "train"):
            return to_uint8(self.tensors(self._split_of(source))["image"])
        if source == "conditional-real":
            return to_uint8(self.tensors(self.spec.real_split)["image"][: self.conditional_count()])
        if source == "conditional":
            return self._conditional_images()
        if source == "joint":
            return self._joint_samples()[0]
        if source == "joint-real":
            return to_uint8(self.tensors(self.spec.real_split)["image"])
        return None  # fake: streamed

    def _conditional_images(self) -> torch.Tensor:
        if not hasattr(self, "_conditional"):
            tensors = self.tensors(self.spec.real_split)
            if "text" not in tensors:
                raise ValueError(f"datamodule {self.dm.registry_name!r} has no captions ('text') for conditional "
                                 f"metrics")
            self._conditional = generate_from_captions(self.model, tensors["text"][: self.conditional_count()],
                                                       self.spec.batch_size, self.seed)
        return self._conditional

    def _joint_samples(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``n_fake`` unconditional (uint8 image, caption ids) samples of the unit, drawn once."""
        if not hasattr(self, "_joint"):
            self._joint = sample_joint_pairs(self.model, self.spec.n_fake, self.spec.batch_size, self.seed)
        return self._joint

    def caption_labels(self, source: str) -> CaptionLabels:
        parse = require_caption_label_sets(self.dm)
        if source == "joint":
            text = self._joint_samples()[1]
        elif source == "joint-real":
            tensors = self.tensors(self.spec.real_split)
            if "text" not in tensors:
                raise InputError(f"joint-coherence-real needs captions ('text'); datamodule "
                                 f"{self.dm.registry_name!r} has none")
            text = tensors["text"]
        else:
            raise ValueError(f"no caption labels for source {source!r}")
        rule = str(getattr(self.dm, "caption_validity", "as the datamodule's caption_label_sets")).replace(",", ";")
        return CaptionLabels(list(parse(text)), rule)

    def stream(self, source: str, batch_size: int) -> tuple[Iterator[torch.Tensor], int]:
        if source != "fake":
            return super().stream(source, batch_size)
        n, gen = self.spec.n_fake, torch.Generator().manual_seed(self.seed)

        def batches() -> Iterator[torch.Tensor]:
            for i in range(0, n, batch_size):
                yield to_uint8(self.model.sample(min(batch_size, n - i), generator=gen).float().cpu())

        return batches(), n

    def cache_key(self, source: str, backbone: FeatureBackbone) -> str | None:
        if source in ("real", "train"):
            return real_cache_key(self.dm.identity(), self._split_of(source), backbone)
        return None

    def labels(self, source: str) -> torch.Tensor:
        labels = self.tensors(self._split_of(source))["label"]
        return labels[: self.conditional_count()] if source in ("conditional", "conditional-real") else labels

    def captions(self, source: str) -> list[str]:
        if not callable(getattr(self.dm, "caption_strings", None)):
            raise ValueError(f"datamodule {self.dm.registry_name!r} has no caption_strings(split); clip-score "
                             f"needs the caption strings")
        return list(self.dm.caption_strings(self.spec.real_split))[: self.conditional_count()]


@torch.no_grad()
def generate_from_captions(
    model: TextToImageGenerator, text: torch.Tensor, batch_size: int, seed: int, console: Console | None = None
) -> torch.Tensor:
    """One image per caption, drawn with a CPU generator seeded with ``seed``, quantized like every feature path.

    Args:
        model: The text-to-image model (in eval mode). text: (N, L) long caption tokens (0 = padding).
        batch_size: Captions per ``sample_from_text`` call. seed: The run's seed. console: Where the bar is drawn.

    Returns:
        (N, C, H, W) uint8 images on the CPU (:func:`bench.features.to_uint8` of the model's [0, 1] output).
    """
    gen = torch.Generator().manual_seed(seed)
    out = []
    with progress(console) as bar:
        task = bar.add_task("sampling from captions", total=len(text))
        for tokens in iter_batches(text, batch_size):
            out.append(to_uint8(model.sample_from_text(tokens.to(model.device), generator=gen).float().cpu()))
            bar.advance(task, len(tokens))
    return torch.cat(out)


@torch.no_grad()
def sample_joint_pairs(
    model: JointSampler, n: int, batch_size: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` unconditional (image, caption) samples of ``model`` from its prior, drawn with one CPU generator seeded
    with ``seed`` in calls of at most ``batch_size`` (same seed and batch size, same samples).

    Args:
        model: A joint sampler (in eval mode). n: Samples. batch_size: Samples per ``sample_joint`` call.
        seed: The run's seed.

    Returns:
        (n, C, H, W) uint8 images (:func:`bench.features.to_uint8` of the model's [0, 1] output) and (n, L) long
        caption ids, on the CPU.
    """
    gen = torch.Generator().manual_seed(seed)
    images, text = [], []
    for i in range(0, n, batch_size):
        x, w = model.sample_joint(min(batch_size, n - i), generator=gen)  # (b, C, H, W), (b, L)
        images.append(to_uint8(x.float().cpu()))
        text.append(w.long().cpu())
    return torch.cat(images), torch.cat(text)


@dataclass
class ImageSetSubject(Subject):
    """Image sets (``bench eval``): ``real`` and ``fake`` (and ``train`` for memorization metrics).

    Attributes:
        sets: uint8 (N, C, H, W) images by source. cache: Real-feature cache identity (datamodule identity, split)
            by source, for sources read from a registered datamodule. labels_of: Labels by source where known.
    """

    sets: dict[str, torch.Tensor]
    cache: dict[str, tuple[str, str]] = field(default_factory=dict)
    labels_of: dict[str, torch.Tensor] = field(default_factory=dict)
    description: str = "image sets"

    def sources(self) -> frozenset[str]:
        return frozenset(self.sets)

    def can_answer(self, request: rq.Request) -> bool:
        if isinstance(request, rq.Labels):
            return request.source in self.labels_of
        if isinstance(request, (rq.ClassifierLogits, rq.CaptionSimilarity)):
            return False  # bench eval takes no classifier or image-text backbone
        return super().can_answer(request)

    def images(self, source: str) -> torch.Tensor | None:
        return self.sets[source]

    def cache_key(self, source: str, backbone: FeatureBackbone) -> str | None:
        return real_cache_key(*self.cache[source], backbone) if source in self.cache else None

    def labels(self, source: str) -> torch.Tensor:
        return self.labels_of[source]


class UnitInputs:
    """The answers to one unit's requests, each computed once (see the module docstring).

    Args:
        subject: What is scored. spec: Evaluation settings (batch size, image counts).
        clip_backbone, classifier_backbone: The track's image–text and classifier backbones (None if none).
        cache_dir: The real-feature cache. console: Where progress bars go.
        shared: Answers that are the same for every unit of a track (outputs on real reference examples),
            kept by the evaluator across units; keyed like this object's memo plus the subject's cache key.
        counter: Called with (backbone, number of images) for every backbone pass (tests count forwards).
    """

    def __init__(self, subject: Subject, spec: EvalSpec, clip_backbone: Any = None, classifier_backbone: Any = None,
                 cache_dir: Path | None = None, console: Console | None = None,
                 shared: dict[Any, Any] | None = None,
                 counter: Callable[[Any, int], None] | None = None) -> None:
        self.subject, self.spec = subject, spec
        self.clip, self.classifier = clip_backbone, classifier_backbone
        self.cache_dir, self.console = cache_dir, console
        self.shared = {} if shared is None else shared
        self.counter = counter
        self._memo: dict[tuple[rq.Request, Any], Any] = {}

    def answer(self, needs: Iterable[tuple[rq.Request, FeatureBackbone | None]]) -> None:
        """Computes every distinct (request, backbone) of ``needs`` not answered yet: first every backbone pass,
        one per source, then the rest."""
        needs = [n for n in dict.fromkeys(needs) if n not in self._memo]
        if any(isinstance(r, rq.ClassifierLogits) and r.source == "fake" for r, _ in needs):
            self._needs_fake_images = True  # the streamed samples are kept by the backbone pass
        passes: dict[str, dict[FeatureBackbone, bool]] = {}
        for request, backbone in needs:
            if isinstance(request, (rq.Features, rq.Logits)):
                if backbone is None:
                    raise ValueError(f"{type(request).__name__}({request.source!r}) needs a feature backbone "
                                     f"(eval.backbone)")
                wanted = passes.setdefault(request.source, {})
                wanted[backbone] = wanted.get(backbone, False) or isinstance(request, rq.Logits)
        for source, wanted in passes.items():
            self._backbone_pass(source, list(wanted.items()))
        for request, backbone in needs:
            if (request, backbone) not in self._memo:
                self._memo[(request, backbone)] = self._answer_one(request)

    def get(self, request: rq.Request, backbone: FeatureBackbone | None) -> Any:
        """The answer to ``request`` (for feature requests: of ``backbone``)."""
        key = (request, backbone if isinstance(request, (rq.Features, rq.Logits)) else None)
        if key not in self._memo:
            self.answer([key])
        return self._memo[key]

    def backbone_outputs(self) -> Iterator[tuple[rq.Request, FeatureBackbone, torch.Tensor]]:
        """Every backbone output answered so far: (Features or Logits request, backbone, (N, D) tensor)."""
        for (request, backbone), value in self._memo.items():
            if isinstance(request, (rq.Features, rq.Logits)):
                yield request, backbone, value

    # ----------------------------------------------------------------------------------------- backbone passes
    def _backbone_pass(self, source: str, wanted: list[_Pass]) -> None:
        """Features (and logits) of every backbone in ``wanted`` on ``source``'s images, in one pass over them;
        cached sources are read from (or written to) the real-feature cache, one backbone at a time."""
        pending: list[_Pass] = []
        for backbone, logits in wanted:
            key = self.subject.cache_key(source, backbone)
            shared_key = ("outputs", key, source) if key is not None else None
            if key is not None and not logits:
                images = self.subject.images(source)
                compute = lambda bb=backbone, im=images: self._run([(bb, False)], iter_batches(  # noqa: E731
                    im, self.spec.batch_size), len(im), f"{source} features")[0][0]
                feats, _ = cached_real_features(key, compute, self.cache_dir, source_images=images)
                self._memo[(rq.Features(source), backbone)] = feats
            elif shared_key is not None and (shared_key, backbone) in self.shared:
                self._store(source, backbone, *self.shared[(shared_key, backbone)])
            else:
                pending.append((backbone, logits))
        if not pending:
            return
        batches, total = self.subject.stream(source, self.spec.batch_size)
        streamed = source == "fake" and self.subject.images("fake") is None
        keep = streamed and getattr(self, "_needs_fake_images", False)
        label = "sampling + features" if streamed else f"{source} features"
        for (backbone, _), (feats, logits) in zip(pending, self._run(pending, batches, total, label, keep)):
            self._store(source, backbone, feats, logits)
            key = self.subject.cache_key(source, backbone)
            if key is not None:
                self.shared[(("outputs", key, source), backbone)] = (feats, logits)

    def _store(self, source: str, backbone: FeatureBackbone, feats: torch.Tensor, logits: torch.Tensor | None) -> None:
        self._memo[(rq.Features(source), backbone)] = feats
        if logits is not None:
            self._memo[(rq.Logits(source), backbone)] = logits

    @torch.no_grad()
    def _run(self, passes: list[_Pass], batches: Iterator[torch.Tensor], total: int, label: str,
             keep: bool = False) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """Runs each batch (uint8) through every backbone of ``passes`` once; features (and logits) on the CPU.
        ``keep``: also keep the images (streamed samples that a classifier request needs)."""
        feats: list[list[torch.Tensor]] = [[] for _ in passes]
        logits: list[list[torch.Tensor]] = [[] for _ in passes]
        devices = [_device(backbone) for backbone, _ in passes]
        kept: list[torch.Tensor] = []
        with progress(self.console) as bar:
            task = bar.add_task(label, total=total)
            for images in batches:
                if keep:
                    kept.append(images)
                for i, ((backbone, with_logits), device) in enumerate(zip(passes, devices)):
                    x = images.to(device)
                    if with_logits:
                        f, lg = backbone.features_and_logits(x)
                        logits[i].append(lg.float().cpu())
                    else:
                        f = backbone(x)
                    feats[i].append(f.float().cpu())
                    if self.counter is not None:
                        self.counter(backbone, len(images))
                bar.advance(task, len(images))
        if keep:
            self._fake_images = torch.cat(kept)
        return [(torch.cat(f), torch.cat(lg) if lg else None) for f, lg in zip(feats, logits)]

    def fake_images(self) -> torch.Tensor:
        """(N, C, H, W) uint8 images of ``fake`` (held, or kept from the backbone pass, or drawn now)."""
        held = self.subject.images("fake")
        if held is not None:
            return held
        if not hasattr(self, "_fake_images"):
            batches, _ = self.subject.stream("fake", self.spec.batch_size)
            self._fake_images = torch.cat(list(batches))
        return self._fake_images

    # ----------------------------------------------------------------------------------------- other requests
    def _images_of(self, source: str) -> torch.Tensor:
        return self.fake_images() if source == "fake" else self.subject.images(source)

    def _answer_one(self, request: rq.Request) -> Any:
        subject = self.subject
        if isinstance(request, rq.Labels):
            return subject.labels(request.source)
        if isinstance(request, rq.ClassifierLogits):
            if self.classifier is None:
                raise ValueError("classifier logits need a classifier backbone (eval.classifier_backbone)")
            return self._reference_or(request, lambda: classifier_logits(
                self.classifier, self._images_of(request.source), self.spec.batch_size))
        if isinstance(request, rq.CaptionLabelSets):
            return self._reference_or(request, lambda: subject.caption_labels(request.source))
        if isinstance(request, rq.CaptionSimilarity):
            if self.clip is None:
                raise ValueError("caption similarities need an image-text backbone (eval.clip_backbone)")
            return self._reference_or(request, lambda: caption_similarities(
                self.clip, self._images_of(request.source), subject.captions(request.source), self.spec.batch_size))
        assert isinstance(subject, ModelSubject), f"{type(request).__name__} needs a model"
        model, dm, split, bs = subject.model, subject.dm, self.spec.real_split, self.spec.batch_size
        on_device = lambda b: {k: v.to(model.device) for k, v in b.items()}  # noqa: E731
        if isinstance(request, rq.Reconstructions):
            return [(model.reconstruct_batch(on_device(b)).cpu(), b["image"])
                    for b in dm.dataloader(split, batch_size=bs)]
        if isinstance(request, rq.ClassifierPredictions):
            return self._predictions(request.condition)
        if isinstance(request, rq.Likelihoods):
            gen = torch.Generator().manual_seed(subject.seed)  # posterior samples of the importance-sampled bound
            images = subject.tensors(split)["image"][: self.spec.nll_images or None]
            nll = [model.nll(x.to(model.device), num_samples=request.num_samples, generator=gen).cpu()
                   for x in iter_batches(images, bs)]
            return LikelihoodAnswer(nll, model.likelihood_dims(), model.likelihood, model.nll_bound)
        raise TypeError(f"no provider for request {request!r}")

    def _reference_or(self, request: rq.Request, compute: Callable[[], Any]) -> Any:
        """Outputs on ``conditional-real`` and ``joint-real`` examples are the same for every unit of a track:
        computed once."""
        source = getattr(request, "source", None)
        if source not in _REFERENCE_SOURCES or not isinstance(self.subject, ModelSubject):
            return compute()
        count = self.subject.conditional_count() if source == "conditional-real" else None  # joint-real: all
        key = ("reference", request, self.subject.dm.identity(), self.spec.real_split, count)
        if key not in self.shared:
            self.shared[key] = compute()
        return self.shared[key]

    def _predictions(self, condition: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """A classifier's (logits, labels) batches on the reference split under ``condition``; the noise seed
        depends on the condition only, so every model and seed sees the same corrupted test set."""
        subject = self.subject
        assert isinstance(subject, ModelSubject)
        model, data_spec = subject.model, subject.dm.data_spec()
        loader = subject.dm.dataloader(self.spec.real_split, batch_size=self.spec.batch_size)
        predict = lambda b: model.predict_logits({k: v.to(model.device) for k, v in b.items()}).cpu()  # noqa: E731
        if condition == "clean":
            return [(predict(b), b["label"]) for b in loader]
        table = {c[0]: (i, c) for i, c in enumerate(conditions(data_spec.modalities))}
        i, (_, kind, modality, level) = table[condition]
        gen = torch.Generator().manual_seed(10_000 + i)

        def corrupt(b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            if kind == "drop":
                return drop_modality(b, modality)
            return add_noise(b, modality, level, data_spec.vocab_size, generator=gen)

        return [(predict(corrupt(b)), b["label"]) for b in loader]
