"""The shared model tests (diffusers' ``tests/models/test_modeling_common.py`` style).

A model's test class mixes in :class:`ModelTesterMixin` and declares only what differs::

    class TestVAE(ModelTesterMixin):
        model_name = "vae"
        datamodule_name = "digits"
        datamodule_args = {"image_size": 16}
        hparams = {"latent_dim": 8, "width": 8}

Every check below then runs on that model: building from a datamodule's :class:`~datamodules.base.DataSpec`, the
capabilities its family base class promises, determinism under a seed, the save/load round trip, "one optimizer
step changes the weights", a ``fast_dev_run`` fit, registration facts and the unknown-argument error.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, ClassVar

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import lightning.pytorch as pl  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from bench.registry import registered_name  # noqa: E402
from datamodules import DATAMODULES, BenchDataModule  # noqa: E402
from models import (  # noqa: E402
    MODELS, AutoEncoder, BenchModule, Classifier, ImageGenerator, LikelihoodModel, TextToImageGenerator,
)

warnings.filterwarnings("ignore", message=".*does not have many workers.*")
warnings.filterwarnings("ignore", message=".*is smaller than the logging interval.*")


def quiet_trainer(tmp_path: Path, **kwargs: Any) -> pl.Trainer:
    """A CPU-friendly Trainer that writes nothing outside ``tmp_path`` and prints no bars or summaries."""
    defaults: dict[str, Any] = dict(
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
    )
    defaults.update(kwargs)
    return pl.Trainer(**defaults)


def param_snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Detached CPU copies of every trainable parameter."""
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def assert_state_dicts_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key].cpu(), b[key].cpu()), f"state_dict entry {key!r} differs"


class ModelTesterMixin:
    """Shared checks for every registered model. Subclasses set the class attributes below."""

    #: Registered model name (``MODELS.get(model_name)``).
    model_name: ClassVar[str]
    #: Registered datamodule name and its (tiny) constructor arguments.
    datamodule_name: ClassVar[str]
    datamodule_args: ClassVar[dict[str, Any]] = {}
    #: Tiny model hyperparameters passed to ``from_data``.
    hparams: ClassVar[dict[str, Any]] = {}
    #: Batch size of the datamodule (training) and of the input batches of the checks.
    batch_size: ClassVar[int] = 8
    #: Number of images drawn by ``sample`` in the checks.
    num_samples: ClassVar[int] = 4

    # ------------------------------------------------------------------------------------------------- helpers
    @pytest.fixture(scope="class")
    def dm(self) -> BenchDataModule:
        dm = DATAMODULES.get(self.datamodule_name)(batch_size=self.batch_size, **self.datamodule_args)
        dm.setup()
        return dm

    @pytest.fixture(scope="class")
    def batch(self, dm: BenchDataModule) -> dict[str, torch.Tensor]:
        return next(iter(dm.dataloader("train", batch_size=self.batch_size)))

    def build_model(self, dm: BenchDataModule, seed: int = 0) -> BenchModule:
        pl.seed_everything(seed, verbose=False)
        return MODELS.get(self.model_name).from_data(dm.data_spec(), **self.hparams)

    def outputs(self, model: BenchModule, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Everything the evaluator may ask of ``model`` (eval mode, seeded noise), by capability."""
        model.eval()
        out: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            if isinstance(model, ImageGenerator):
                out["sample"] = model.sample(self.num_samples, generator=torch.Generator().manual_seed(123))
            if isinstance(model, AutoEncoder):
                out["reconstruct"] = model.reconstruct_batch(batch)
                torch.manual_seed(7)  # the ELBO may draw posterior noise from the global RNG
                out["elbo"] = model.elbo(batch["image"])
            if isinstance(model, LikelihoodModel):
                out["nll"] = model.nll(batch["image"], num_samples=2, generator=torch.Generator().manual_seed(5))
            if isinstance(model, TextToImageGenerator):
                out["from_text"] = model.sample_from_text(batch["text"], generator=torch.Generator().manual_seed(9))
            if isinstance(model, Classifier):
                out["logits"] = model.predict_logits(batch)
        assert out, f"{self.model_name} is none of ImageGenerator, AutoEncoder, Classifier"
        return out

    # ------------------------------------------------------------------------------------------------- checks
    def test_builds_with_family_capabilities(self, dm: BenchDataModule, batch: dict[str, torch.Tensor]) -> None:
        model = self.build_model(dm)
        spec = dm.data_spec()
        assert isinstance(model, BenchModule)
        assert isinstance(model, (ImageGenerator, Classifier)), "a model must declare a capability base class"
        model.eval()
        n, b = self.num_samples, len(batch["label"])
        with torch.no_grad():
            if isinstance(model, ImageGenerator):
                images = model.sample(n, generator=torch.Generator().manual_seed(0))
                assert images.shape == (n, *spec.image_shape)
                assert images.dtype.is_floating_point
                assert images.device == model.device
                assert torch.isfinite(images).all()
                assert images.min() >= 0 and images.max() <= 1
                default_rng = model.sample(2)  # generator=None uses the global RNG
                assert default_rng.shape == (2, *spec.image_shape)
            if isinstance(model, AutoEncoder):
                x = batch["image"]
                recon = model.reconstruct(x)
                assert recon.shape == x.shape
                assert torch.isfinite(recon).all()
                assert recon.min() >= 0 and recon.max() <= 1
                assert model.reconstruct_batch(batch).shape == x.shape
                elbo = model.elbo(x)
                assert elbo.shape == (b,)
                assert torch.isfinite(elbo).all()
            if isinstance(model, LikelihoodModel):
                nll = model.nll(batch["image"], num_samples=2)
                assert nll.shape == (b,)
                assert torch.isfinite(nll).all() and (nll > 0).all(), "an NLL in nats per image is positive"
                assert model.likelihood and model.nll_bound and model.likelihood_dims() > 0
            if isinstance(model, TextToImageGenerator):
                assert "text" in model.required_modalities()
                images = model.sample_from_text(batch["text"], generator=torch.Generator().manual_seed(0))
                assert images.shape == (b, *spec.image_shape)
                assert torch.isfinite(images).all()
                assert images.min() >= 0 and images.max() <= 1
            if isinstance(model, Classifier):
                logits = model.predict_logits(batch)
                assert logits.shape == (b, spec.num_classes)
                assert torch.isfinite(logits).all()

    def test_data_spec_fills_shape_arguments(self, dm: BenchDataModule) -> None:
        model = self.build_model(dm)
        spec = dm.data_spec().as_kwargs()
        for key, value in model.hparams.items():
            if key in spec:
                expected = spec[key]
                if isinstance(expected, tuple):
                    value = tuple(value)
                assert value == expected, f"{key}: {value!r} != data spec's {expected!r}"
        for key, value in self.hparams.items():
            assert model.hparams[key] == value

    def test_deterministic_under_seed(self, dm: BenchDataModule, batch: dict[str, torch.Tensor]) -> None:
        a, b = self.build_model(dm, seed=0), self.build_model(dm, seed=0)
        assert_state_dicts_equal(a.state_dict(), b.state_dict())
        out_a, out_b = self.outputs(a, batch), self.outputs(b, batch)
        for key in out_a:
            assert torch.equal(out_a[key], out_b[key]), f"{key} differs between equally seeded models"

    def test_different_seeds_give_different_weights(self, dm: BenchDataModule) -> None:
        a, b = self.build_model(dm, seed=0), self.build_model(dm, seed=1)
        sa, sb = param_snapshot(a), param_snapshot(b)
        assert any(not torch.equal(sa[k], sb[k]) for k in sa), "the seed does not reach the initialization"

    def test_save_load_round_trip(self, dm: BenchDataModule, batch: dict[str, torch.Tensor], tmp_path: Path) -> None:
        model = self.build_model(dm)
        path = tmp_path / "weights.pt"
        model.save_weights(path)

        payload = torch.load(path, map_location="cpu", weights_only=True)  # plain tensors and builtins only
        assert set(payload) >= {"hparams", "state_dict"}

        loaded = type(model).load_weights(path)
        assert type(loaded) is type(model)
        assert dict(loaded.hparams) == dict(model.hparams)
        assert_state_dicts_equal(model.state_dict(), loaded.state_dict())
        out_a, out_b = self.outputs(model, batch), self.outputs(loaded, batch)
        for key in out_a:
            assert torch.equal(out_a[key], out_b[key]), f"{key} differs after save/load"

    def test_one_optimizer_step_changes_weights(self, dm: BenchDataModule, tmp_path: Path) -> None:
        model = self.build_model(dm)
        before = param_snapshot(model)
        trainer = quiet_trainer(tmp_path, max_steps=1, limit_val_batches=0, deterministic=True)
        trainer.fit(model, datamodule=dm)
        after = param_snapshot(model)
        assert before.keys() == after.keys()
        changed = {k for k in before if not torch.equal(before[k], after[k])}
        assert changed, "no parameter changed after one optimizer step"
        for name, child in model.named_children():
            names = {f"{name}.{k}" for k, p in child.named_parameters() if p.requires_grad}
            if names:  # every trainable part (e.g. both generator and discriminator of a GAN) was updated
                assert names & changed, f"no parameter of {name!r} changed after one optimizer step"
        for k in after:
            assert torch.isfinite(after[k]).all(), f"{k} is not finite after one step"

    def test_fast_dev_run(self, dm: BenchDataModule, tmp_path: Path) -> None:
        model = self.build_model(dm)
        trainer = quiet_trainer(tmp_path, fast_dev_run=True)
        trainer.fit(model, datamodule=dm)
        assert trainer.state.finished
        assert not getattr(model, "diverged", False)

    def test_registered_name_and_family(self, dm: BenchDataModule) -> None:
        model = self.build_model(dm)
        cls = MODELS.get(self.model_name)
        assert type(model) is cls
        assert cls.registry_name == self.model_name
        assert registered_name(model) == self.model_name
        assert isinstance(cls.family, str) and cls.family, f"{self.model_name} has no family"
        assert model.num_parameters() > 0

    def test_unknown_hparam_raises_type_error_listing_accepted(self, dm: BenchDataModule) -> None:
        cls = MODELS.get(self.model_name)
        with pytest.raises(TypeError) as info:
            cls.from_data(dm.data_spec(), **self.hparams, not_an_argument=1)
        message = str(info.value)
        assert "not_an_argument" in message
        assert self.model_name in message
        for accepted in self.hparams:  # the arguments the test itself passes are accepted ones
            assert accepted in message, f"accepted argument {accepted!r} is not listed in: {message}"
