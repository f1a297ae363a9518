"""Suite files shipped with the package, registered by file name in :data:`SUITES`."""

from pathlib import Path

from bench.registry import Registry, UnknownNameError
from bench.spec import SuiteSpec, load_suite_file

SUITES_DIR = Path(__file__).parent
SUITES: Registry[Path] = Registry("suite")
for _path in sorted(SUITES_DIR.glob("*.yaml")):
    SUITES.add(_path.stem, _path)


def load_suite(name_or_path: str) -> SuiteSpec:
    """A registered suite by name, or any suite file by path (``.yaml``/``.yml``).

    Raises:
        UnknownNameError: If the name is neither registered nor an existing YAML file.
        SpecError: If the file is invalid.
    """
    if name_or_path.endswith((".yaml", ".yml")) and Path(name_or_path).is_file():
        return load_suite_file(name_or_path)
    return load_suite_file(SUITES.get(name_or_path))


__all__ = ["SUITES", "SUITES_DIR", "UnknownNameError", "load_suite"]
