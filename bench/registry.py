"""A small name → object registry shared by models, datamodules, metrics, backbones and suites.

Follows torch-fidelity's ``registry.py`` and MultiBench/mmf's decorator registration: names are checked when
they are registered (format, duplicates, base class), and ``names()`` feeds argparse ``choices=`` so a typo is
caught before any work starts.

A registry built with a ``plugin_group`` also holds the entry points of that group (:mod:`bench.plugins`): their
names are known at once, their objects are imported and checked like built-ins when first looked up.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from importlib.metadata import EntryPoint
from typing import Any, Generic, NoReturn, TypeVar

from bench import plugins
from bench.errors import InputError

T = TypeVar("T")

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9\-]*[a-z0-9]$|^[a-z0-9]$")


class RegistryError(InputError):
    """A registration was rejected or a name could not be resolved."""


class UnknownNameError(RegistryError, KeyError):
    """A name was looked up that is not registered; the message lists the valid names."""


class Registry(Generic[T]):
    """Maps lower-case kebab-case names to classes (or other objects).

    Args:
        kind: What is registered, used in messages ("model", "metric", ...).
        base: If given, every registered object must be a subclass of it.
        plugin_group: If given, the entry-point group (:data:`bench.plugins.GROUPS`) whose installed entry points
            become names of this registry (see :meth:`add_plugins`).
        plugin_value: Turns a loaded plugin object into what is registered (suites: a path), raising
            ``TypeError`` / ``ValueError`` with the reason when it cannot; None registers the object as it is.

    Example:
        >>> MODELS = Registry("model", base=object)
        >>> @MODELS.register("my-model")
        ... class MyModel: ...
        >>> MODELS.get("my-model") is MyModel
        True
    """

    def __init__(self, kind: str, base: type | None = None, plugin_group: str | None = None,
                 plugin_value: Callable[[Any], T] | None = None) -> None:
        self.kind = kind
        self.base = base
        self.plugin_group = plugin_group
        self._plugin_value = plugin_value
        self._items: dict[str, T] = {}
        self._pending: dict[str, list[EntryPoint]] = {}  # plugins known by name, not imported yet
        self._refused: dict[str, str] = {}  # name -> the one-line reason its plugin was refused
        self._plugins: dict[str, EntryPoint] = {}  # loaded plugins by name
        if plugin_group is not None:
            self.add_plugins(plugins.entry_points(plugin_group))

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that registers ``obj`` under ``name``.

        Raises:
            RegistryError: If the name is malformed, already taken, or the object has the wrong base class.
        """

        def decorator(obj: T) -> T:
            self.add(name, obj)
            return obj

        return decorator

    def add(self, name: str, obj: T) -> None:
        """Registers ``obj`` under ``name`` (the non-decorator form of :meth:`register`).

        A plugin waiting under ``name`` (not imported yet) is refused: code-registered names win (see
        :mod:`bench.plugins`).
        """
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise RegistryError(
                f"invalid {self.kind} name {name!r}: use lower-case letters, digits and inner hyphens, e.g. 'my-{self.kind}'"
            )
        if name in self._items:
            raise RegistryError(f"{self.kind} {name!r} is already registered (by {self._items[name]!r})")
        if self.base is not None and not (isinstance(obj, type) and issubclass(obj, self.base)):
            raise RegistryError(f"{self.kind} {name!r} must be a subclass of {self.base.__name__}, got {obj!r}")
        self._items[name] = obj
        if isinstance(obj, type):
            # The registered name is the one every table and message uses.
            obj.registry_name = name  # type: ignore[attr-defined]
        for ep in self._pending.pop(name, []):
            self._refused[name] = self._collision(ep, name)

    # ------------------------------------------------------------------------------------------- plugins
    def add_plugins(self, entry_points: Iterable[EntryPoint]) -> None:
        """Makes each entry point's name a name of this registry without importing it; its object is loaded
        (``ep.load()``) and checked by :meth:`add` the first time the name is looked up.

        A name already registered in code refuses the plugin (the name then raises that refusal when used).
        """
        for ep in entry_points:
            if ep.name in self._items:
                self._refused[ep.name] = self._collision(ep, ep.name)
            else:
                self._pending.setdefault(ep.name, []).append(ep)

    def _collision(self, ep: EntryPoint, name: str) -> str:
        return (f"{self.kind} {plugins.describe(ep)} is refused: the name {name!r} is taken by "
                f"{_label(self._items[name])}, which this package (or code) registered; a plugin never replaces "
                f"it: rename the entry point or uninstall the distribution")

    def _refuse(self, name: str, message: str) -> NoReturn:
        self._refused[name] = message
        raise RegistryError(message)

    def _load_plugin(self, name: str) -> None:
        """Imports, converts and registers the plugin waiting under ``name``.

        Raises:
            RegistryError: One line naming the entry point and its distribution, when the name is provided by
                several distributions, the plugin fails to import, or its object fails :meth:`add`'s checks.
        """
        eps = self._pending.pop(name)
        if len(eps) > 1:
            self._refuse(name, f"{self.kind} {name!r} is provided by {len(eps)} plugins, so none is used: "
                               f"{'; '.join(map(plugins.describe, eps))}; uninstall all but one")
        ep = eps[0]
        what = f"{self.kind} {plugins.describe(ep)}"
        try:
            obj = ep.load()
        except Exception as err:  # any failure of the plugin's own import is the plugin's, reported in one line
            cause = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
            self._refuse(name, f"{what} failed to load: {cause}")
        if self._plugin_value is not None:
            try:
                obj = self._plugin_value(obj)
            except (TypeError, ValueError) as err:
                self._refuse(name, f"{what} is refused: {err}")
        if self._items.get(name) is obj:  # its module registered it under the same name itself (a decorator)
            self._plugins[name] = ep
            return
        try:
            self.add(name, obj)
        except RegistryError as err:
            self._refuse(name, f"{what} is refused: {err}")
        self._plugins[name] = ep

    def load_plugins(self) -> dict[str, str]:
        """Imports and checks every plugin not loaded yet (``bench list`` does, to report broken ones).

        Returns:
            ``{name: one-line reason}`` of every refused plugin (``"*"``: the installed entry points could not be
            read at all), sorted by name; empty when every plugin is usable.
        """
        for name in list(self._pending):
            try:
                self._load_plugin(name)
            except RegistryError:
                pass
        problems = dict(sorted(self._refused.items()))
        if self.plugin_group is not None and plugins.scan_error():
            problems["*"] = f"{self.kind} plugins: {plugins.scan_error()}"
        return problems

    def plugin(self, name: str) -> EntryPoint | None:
        """The entry point ``name`` was loaded from, or None for a name registered in code (or not loaded yet)."""
        return self._plugins.get(name)

    def get(self, name: str) -> T:
        """Returns the object registered under ``name``.

        Raises:
            UnknownNameError: If ``name`` is not registered; the message lists the valid names.
            RegistryError: If ``name``'s plugin is refused (it does not load, fails the checks, or collides with
                a registered name); one line naming the entry point and its distribution.
        """
        if name in self._refused:
            raise RegistryError(self._refused[name])
        if name in self._pending:
            self._load_plugin(name)
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; valid {self.kind}s: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        """Registered names, sorted (feeds argparse ``choices=``); plugins' names count before they are loaded,
        refused ones too (looking them up raises the reason)."""
        return sorted({*self._items, *self._pending, *self._refused})

    def __contains__(self, name: object) -> bool:
        return name in self._items or name in self._pending or name in self._refused

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


def _label(obj: Any) -> str:
    """``module.Qualname`` of a class, else its repr (for messages)."""
    if isinstance(obj, type):
        return f"{obj.__module__}.{obj.__qualname__}"
    return repr(obj)


def registered_name(obj: Any) -> str:
    """The name a class (or an instance of it) was registered under."""
    cls = obj if isinstance(obj, type) else type(obj)
    return getattr(cls, "registry_name", cls.__name__)
