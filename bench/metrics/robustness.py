"""Robustness of a multimodal classifier: accuracy with one modality missing or corrupted (MultiBench-style).

The evaluator scores the same test split under a fixed set of conditions (see :mod:`bench.corruptions`) and feeds
each condition's logits here with its name: ``clean``, ``drop-<modality>``, ``noise-<modality>@<level>``.
``compute()`` returns one value per condition (each a result row) plus, per modality, the *relative robustness*:
the mean over noise levels of accuracy(level) / accuracy(clean) (1 = unaffected by the noise; MultiBench reports
the same area-under-the-curve idea relative to clean performance).
"""

from __future__ import annotations

import torch
from torchmetrics import Metric

from bench.metrics import requests as rq
from bench.metrics.base import BenchMetric, MetricContext
from bench.metrics.registry import METRICS

#: Noise levels: image Gaussian std and text replacement probability.
NOISE_LEVELS: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0)


def conditions(modalities: tuple[str, ...], levels: tuple[float, ...] = NOISE_LEVELS) -> list[tuple[str, str, str, float]]:
    """(name, kind, modality, level) of every test condition; kind is ``clean``, ``drop`` or ``noise``."""
    out = [("clean", "clean", "", 0.0)]
    for m in modalities:
        out.append((f"drop-{m}", "drop", m, 0.0))
        out += [(f"noise-{m}@{lvl:g}", "noise", m, lvl) for lvl in levels]
    return out


@METRICS.register("robustness")
class Robustness(BenchMetric, Metric):
    """Accuracy under each corruption condition and relative robustness per modality; higher is better.

    Args:
        modalities: The modalities that are corrupted, one at a time.
        levels: Noise levels.
    """

    input_kind = "robustness"  # type: ignore[assignment]
    higher_is_better = True
    full_state_update = False

    def __init__(self, modalities: tuple[str, ...] = ("image", "text"), levels: tuple[float, ...] = NOISE_LEVELS,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.modalities, self.levels = tuple(modalities), tuple(levels)
        self.names = [c[0] for c in conditions(self.modalities, self.levels)]
        self.add_state("correct", torch.zeros(len(self.names), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros(len(self.names), dtype=torch.float64), dist_reduce_fx="sum")

    @classmethod
    def build(cls, ctx: MetricContext) -> Robustness:
        return cls(modalities=ctx.modalities)

    def requests(self) -> tuple[rq.Request, ...]:
        return tuple(rq.ClassifierPredictions(name) for name in self.names)

    def feed(self, inputs) -> None:
        for request in self.requests():
            for logits, label in inputs[request]:
                self.update(request.condition, logits, label)

    def update(self, condition: str, logits: torch.Tensor, target: torch.Tensor) -> None:
        """Adds (B, K) logits and (B,) labels of one batch under ``condition`` (one of :attr:`names`)."""
        if condition not in self.names:
            raise ValueError(f"unknown condition {condition!r}; expected one of {self.names}")
        i = self.names.index(condition)
        self.correct[i] += (logits.argmax(-1) == target).sum().to(torch.float64)
        self.total[i] += len(target)

    def compute(self) -> dict[str, torch.Tensor]:
        acc = self.correct / self.total.clamp(min=1)  # (conditions,)
        out = {f"acc-{name}": acc[i] for i, name in enumerate(self.names) if name != "clean"}
        clean = acc[self.names.index("clean")]
        for m in self.modalities:
            noisy = torch.stack([acc[self.names.index(f"noise-{m}@{lvl:g}")] for lvl in self.levels])
            out[f"relative-robustness-{m}"] = (noisy / clean).mean() if clean > 0 else torch.tensor(float("nan"))
        return out

    def protocol(self) -> str:
        return (f"drop=zeros/padding,noise=image gaussian std|text token replacement prob,"
                f"levels={'/'.join(f'{lvl:g}' for lvl in self.levels)},relative=mean(acc(level)/acc(clean))")
