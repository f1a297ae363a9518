"""Plugins: models, datamodules, metrics, backbones and suites from other installed distributions.

A distribution (any ``pip install``-able package) adds names to the registries through Python entry points, one
group per registry (:data:`GROUPS`)::

    [project.entry-points."genfusion_bench.models"]
    tiny-gan = "my_gan.model:TinyGAN"

    [project.entry-points."genfusion_bench.suites"]
    my-gan = "my_gan.suites:MY_GAN"      # a module attribute holding the path of a suite YAML file

The entry point's name is the registered name; its object must pass the registry's own checks
(:meth:`bench.registry.Registry.add`: the name rule and the base class — :class:`models.base.BenchModule`,
:class:`datamodules.base.BenchDataModule`, :class:`bench.metrics.base.BenchMetric`,
:class:`bench.backbones.base.FeatureBackbone`; a suite's object is a ``str`` or ``os.PathLike`` naming an existing
``.yaml``/``.yml`` file whose ``name`` equals the entry point's name). See ``docs/plugins.md`` for the recipe.

Rules:

* Entry points are read only from installed distributions (:func:`importlib.metadata.entry_points`), never from
  suite files or command-line strings: naming ``my_pkg.module:Class`` in a suite imports nothing.
* Names are known without importing anything (:func:`names` reads the distributions' metadata only), so the
  import-free suite check (:mod:`bench.catalog`) accepts plugin names; the plugin's module is imported the first
  time its name is looked up in the registry (``MODELS.get("tiny-gan")``), or when the registry is listed
  (``bench list models``).
* A plugin that fails to import, or whose object fails the registry's checks, is refused with one line naming
  the entry point and its distribution (:class:`bench.registry.RegistryError`, exit code 2) — when its name is
  used or its registry is listed, never otherwise: a broken plugin does not stop runs that do not name it.
* A plugin never replaces a name registered by this package (or by code): a colliding plugin is refused, and
  the name raises that refusal wherever it is used until the plugin is renamed or uninstalled — a suite naming
  ``dcgan`` must not silently run another model than the one its author meant.
* Two distributions providing the same name in one group are both refused (the name raises when used).
"""

from __future__ import annotations

import functools
import re
from importlib import metadata

#: The entry-point group of each registry kind.
GROUPS: dict[str, str] = {
    "model": "genfusion_bench.models",
    "datamodule": "genfusion_bench.datamodules",
    "metric": "genfusion_bench.metrics",
    "backbone": "genfusion_bench.backbones",
    "suite": "genfusion_bench.suites",
}


@functools.lru_cache(maxsize=1)
def _scan() -> tuple[dict[str, tuple[metadata.EntryPoint, ...]], str | None]:
    """The entry points of every group in :data:`GROUPS` (one read of the installed metadata per process), and
    what could not be read, or None.

    :func:`importlib.metadata.entry_points` fails as a whole when any installed distribution's
    ``entry_points.txt`` is malformed; the distributions are then read one by one, so only the broken one's
    entry points are lost (and named).
    """
    try:
        found = metadata.entry_points()
        return {group: tuple(found.select(group=group)) for group in GROUPS.values()}, None
    except Exception:  # some distribution's metadata is malformed: find which one, keep the others
        pass
    groups: dict[str, list[metadata.EntryPoint]] = {group: [] for group in GROUPS.values()}
    seen: set[str] = set()
    broken: list[str] = []
    for dist in metadata.distributions():
        name = "?"
        try:
            name = dist.metadata["Name"] or name
            key = re.sub(r"[-_.]+", "-", name).lower()
            if key in seen:  # the first on sys.path wins, as importlib.metadata.entry_points() decides
                continue
            seen.add(key)
            for ep in dist.entry_points:
                if ep.group in groups:
                    groups[ep.group].append(ep)
        except Exception as err:
            broken.append(f"{getattr(dist, '_path', None) or name} ({type(err).__name__}: {err})")
    error = f"cannot read the entry points of {'; '.join(broken)}" if broken else None
    return {group: tuple(eps) for group, eps in groups.items()}, error


def entry_points(group: str) -> tuple[metadata.EntryPoint, ...]:
    """The installed entry points of ``group`` (none of them loaded), in ``sys.path`` order."""
    return _scan()[0].get(group, ())


def scan_error() -> str | None:
    """Why the installed entry points could not be read, or None when they were."""
    return _scan()[1]


def names(kind: str) -> frozenset[str]:
    """The entry-point names of ``kind``'s group (``model``, ``datamodule``, ...), read without importing anything."""
    return frozenset(ep.name for ep in entry_points(GROUPS[kind]))


def clear_cache() -> None:
    """Forgets the scanned entry points (after installing a distribution in this process); registries already
    built keep the plugins they were given."""
    _scan.cache_clear()


def describe(ep: metadata.EntryPoint) -> str:
    """``plugin 'NAME' (entry point `NAME = VALUE` in group GROUP of distribution DIST VERSION)``, for messages."""
    dist = getattr(ep, "dist", None)
    source = f"distribution {dist.name} {dist.version}" if dist is not None else "an unknown distribution"
    return f"plugin {ep.name!r} (entry point `{ep.name} = {ep.value}` in group {ep.group} of {source})"
