"""``sample_joint`` of the five multimodal VAEs: both modalities from the same N(0, I) prior draws.

Checked against the models' own pieces: the images are ``sample``'s for a generator in the same state, the captions
the text decoder's argmax at the same z (re-drawn here from a copy of the generator), shapes, ranges and dtypes, and
determinism given the generator.
"""

from __future__ import annotations


import pytest
import torch

from datamodules.captioned_digits import CaptionedDigitsDataModule
from models import MODELS
from models.fusion.mixture_vae import MixtureMVAE
from models.fusion.multimodal_vae import MultimodalVAE

TINY = {"latent_dim": 8, "width": 16, "d_model": 16, "n_layers": 1}
ALL = ("mvae-early", "mvae-mid", "mvae-late", "mopoe", "mmvae")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def dm() -> CaptionedDigitsDataModule:
    dm = CaptionedDigitsDataModule()
    dm.setup()
    return dm


def tiny(name: str, dm: CaptionedDigitsDataModule) -> MultimodalVAE:
    torch.manual_seed(0)
    return MODELS.get(name).from_data(dm.data_spec(), **TINY).eval()


@pytest.mark.parametrize("name", ALL)
def test_sample_joint_decodes_both_modalities_of_the_same_prior_draws(name: str, dm) -> None:
    model = tiny(name, dm)
    n, (c, h, w), length = 7, dm.data_spec().image_shape, dm.data_spec().text_length
    images, text = model.sample_joint(n, generator=torch.Generator().manual_seed(3))
    assert images.shape == (n, c, h, w) and images.dtype == torch.float32
    assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0
    assert text.shape == (n, length) and text.dtype == torch.long
    assert 0 <= int(text.min()) and int(text.max()) < dm.data_spec().vocab_size
    # the same z as sample() draws: its images; the text decoder's argmax at those z: its captions
    assert torch.equal(images, model.sample(n, generator=torch.Generator().manual_seed(3)))
    z = torch.randn(n, model.latent_dim, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(text, model.text_decoder(z).argmax(-1))


@pytest.mark.parametrize("name", ALL)
def test_sample_joint_is_deterministic_given_the_generator(name: str, dm) -> None:
    model = tiny(name, dm)
    a = model.sample_joint(5, generator=torch.Generator().manual_seed(1))
    b = model.sample_joint(5, generator=torch.Generator().manual_seed(1))
    c = model.sample_joint(5, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    torch.manual_seed(4)
    g1 = model.sample_joint(3)
    torch.manual_seed(4)
    g2 = model.sample_joint(3)
    assert torch.equal(g1[0], g2[0]) and torch.equal(g1[1], g2[1])  # None: the global RNG


def test_mixture_models_share_the_base_prior_sampler() -> None:
    """MoPoE and MMVAE keep the base's standard-normal prior sampler (their prior is N(0, I) too)."""
    for cls in (MODELS.get("mopoe"), MODELS.get("mmvae")):
        assert issubclass(cls, MixtureMVAE)
        assert cls.sample_joint is MultimodalVAE.sample_joint and cls.sample is MultimodalVAE.sample
