"""A small name → object registry shared by models, datamodules, metrics, backbones and suites.

Follows torch-fidelity's ``registry.py`` and MultiBench/mmf's decorator registration: names are checked when
they are registered (format, duplicates, base class), and ``names()`` feeds argparse ``choices=`` so a typo is
caught before any work starts.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

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

    Example:
        >>> MODELS = Registry("model", base=object)
        >>> @MODELS.register("my-model")
        ... class MyModel: ...
        >>> MODELS.get("my-model") is MyModel
        True
    """

    def __init__(self, kind: str, base: type | None = None) -> None:
        self.kind = kind
        self.base = base
        self._items: dict[str, T] = {}

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
        """Registers ``obj`` under ``name`` (the non-decorator form of :meth:`register`)."""
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

    def get(self, name: str) -> T:
        """Returns the object registered under ``name``.

        Raises:
            UnknownNameError: If ``name`` is not registered; the message lists the valid names.
        """
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; valid {self.kind}s: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        """Registered names, sorted (feeds argparse ``choices=``)."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


def registered_name(obj: Any) -> str:
    """The name a class (or an instance of it) was registered under."""
    cls = obj if isinstance(obj, type) else type(obj)
    return getattr(cls, "registry_name", cls.__name__)
