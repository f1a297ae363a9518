"""Suite files shipped with the package, registered by file name in :data:`SUITES`, and the suites of installed
plugins (entry-point group ``genfusion_bench.suites``, :mod:`bench.plugins`): an entry point names a module
attribute holding the path of a YAML file (``my-suite = "my_pkg.suites:MY_SUITE"``), whose ``name`` must equal the
entry point's name. Keep that module light (no torch import): suites are read before the heavy imports."""

import os
from pathlib import Path
from typing import Any

from bench.plugins import GROUPS
from bench.registry import Registry, UnknownNameError
from bench.spec import SpecError, SuiteSpec, load_suite_file

SUITES_DIR = Path(__file__).parent


def suite_file(obj: Any) -> Path:
    """The suite file a plugin's entry point names: a ``str`` or ``os.PathLike`` of an existing ``.yaml``/``.yml``.

    Raises:
        TypeError: ``obj`` is not a path. ValueError: it is not an existing YAML file.
    """
    if not isinstance(obj, (str, os.PathLike)):
        raise TypeError(f"a suite entry point must name a str or path of a .yaml file, got {type(obj).__name__} "
                        f"{obj!r}")
    path = Path(obj)
    if path.suffix not in (".yaml", ".yml") or not path.is_file():
        raise ValueError(f"suite file {path} is not an existing .yaml/.yml file")
    return path


SUITES: Registry[Path] = Registry("suite", plugin_group=GROUPS["suite"], plugin_value=suite_file)
for _path in sorted(SUITES_DIR.glob("*.yaml")):
    SUITES.add(_path.stem, _path)


def load_suite(name_or_path: str) -> SuiteSpec:
    """A registered suite by name (built-in or plugin), or any suite file by path (``.yaml``/``.yml``).

    Raises:
        UnknownNameError: If the name is neither registered nor an existing YAML file.
        RegistryError: If the name is a plugin's that is refused (one line naming its entry point).
        SpecError: If the file is invalid, or its ``name`` is not the name it is registered under.
    """
    if name_or_path.endswith((".yaml", ".yml")) and Path(name_or_path).is_file():
        return load_suite_file(name_or_path)
    path = SUITES.get(name_or_path)
    spec = load_suite_file(path)
    if spec.name != name_or_path:  # runs/<name>/ and --publish file names come from the file's name
        raise SpecError(f"{path}: key 'name': the suite is registered as {name_or_path!r} but the file names it "
                        f"{spec.name!r}; they must be equal")
    return spec


__all__ = ["SUITES", "SUITES_DIR", "UnknownNameError", "load_suite", "suite_file"]
