"""Lightning callbacks used by the runner."""

from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import RichProgressBar


class DivergenceMonitor(pl.Callback):
    """Stops training cleanly when a logged training loss becomes NaN or infinite.

    Sets ``pl_module.diverged = True`` and ``trainer.should_stop = True``; the runner then records the run with
    status ``diverged`` and goes on with the rest of the suite.
    """

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        for name, value in trainer.callback_metrics.items():
            if name.startswith("train_") and not math.isfinite(float(value)):
                pl_module.diverged = True
                pl_module.divergence_message = f"{name} became {float(value)} at epoch {trainer.current_epoch}, step {trainer.global_step}"
                trainer.should_stop = True
                return


class QuietProgressBar(RichProgressBar):
    """Lightning's rich progress bar without the logger's version (``v_num: seed0`` on every bar: the unit's
    line above the bar already names the seed)."""

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        return items
