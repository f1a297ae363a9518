"""bench.registry.Registry: registration checks, lookups, and the names the real registries hold."""

import pytest

from bench.registry import Registry, RegistryError, UnknownNameError, registered_name


class Base:
    pass


@pytest.fixture
def reg():
    return Registry("widget", base=Base)


def test_decorator_registers_and_returns_the_class(reg):
    """The decorator returns the class unchanged, ``get`` finds it, and the class learns its registered name."""

    @reg.register("my-widget")
    class MyWidget(Base):
        pass

    assert reg.get("my-widget") is MyWidget
    assert "my-widget" in reg and len(reg) == 1
    assert MyWidget.registry_name == "my-widget"
    assert registered_name(MyWidget) == registered_name(MyWidget()) == "my-widget"


def test_names_sorted(reg):
    """``names()`` (and iteration) are sorted whatever the registration order."""
    for name in ("zeta", "alpha-2", "alpha", "m1d"):
        reg.add(name, type(name.replace("-", "_"), (Base,), {}))
    assert reg.names() == ["alpha", "alpha-2", "m1d", "zeta"]
    assert list(reg) == reg.names()


def test_duplicate_name_rejected(reg):
    """A second registration under a taken name fails and keeps the first object."""

    class A(Base):
        pass

    class B(Base):
        pass

    reg.add("thing", A)
    with pytest.raises(RegistryError, match="already registered"):
        reg.add("thing", B)
    assert reg.get("thing") is A


@pytest.mark.parametrize("name", ["Bad_Name", "", "-x", "x-", "has space", "under_score", "UPPER", 3])
def test_malformed_names_rejected(reg, name):
    """Names must be lower-case kebab-case without leading/trailing hyphens."""

    class A(Base):
        pass

    with pytest.raises(RegistryError, match="invalid widget name"):
        reg.add(name, A)
    assert len(reg) == 0


@pytest.mark.parametrize("name", ["a", "x1", "efficientnet-lite0", "f1-macro"])
def test_wellformed_names_accepted(reg, name):
    """Single characters, digits and inner hyphens are valid."""
    reg.add(name, type("A", (Base,), {}))
    assert name in reg


def test_wrong_base_class_rejected(reg):
    """Classes outside the base, and instances (even of the base), are rejected."""

    class Other:
        pass

    with pytest.raises(RegistryError, match="must be a subclass of Base"):
        reg.register("other")(Other)
    with pytest.raises(RegistryError, match="must be a subclass of Base"):
        reg.add("instance", Base())
    assert len(reg) == 0


def test_unknown_name_lists_valid_names(reg):
    """Unknown names raise UnknownNameError (a RegistryError and a KeyError) naming every valid choice."""
    reg.add("alpha", type("A", (Base,), {}))
    reg.add("beta", type("B", (Base,), {}))
    with pytest.raises(UnknownNameError) as info:
        reg.get("gamma")
    err = info.value
    assert isinstance(err, RegistryError) and isinstance(err, KeyError)
    message = str(err)
    assert "'gamma'" in message and "alpha, beta" in message
    assert not message.startswith('"')  # not quoted the way KeyError quotes its message


def test_real_registries_hold_expected_names():
    """Every shipped model, datamodule, metric, backbone and the quick suite is registered under its name."""
    import datamodules
    import models
    from bench.backbones import BACKBONES
    from bench.metrics import METRICS
    from bench.suites import SUITES

    assert {"dcgan", "vae", "early-concat", "late-average", "unimodal-image", "unimodal-text"} <= set(models.MODELS)
    assert {"digits", "fashion-mnist", "mnist", "cifar10", "captioned-digits"} <= set(datamodules.DATAMODULES)
    assert {"fid", "kid", "mse", "psnr", "ssim", "accuracy", "f1-macro"} <= set(METRICS)
    assert "efficientnet-lite0" in BACKBONES
    assert "quick" in SUITES
    assert SUITES.get("quick").is_file()
    for registry in (models.MODELS, datamodules.DATAMODULES, METRICS, BACKBONES):
        for name in registry.names():
            assert registry.get(name).registry_name == name
