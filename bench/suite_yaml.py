"""Reading suite files: UTF-8 YAML through ``yaml.SafeLoader`` with limits a hostile file cannot get past.

``yaml.safe_load`` alone constructs no objects, but it still takes the last of two equal keys without a word
and expands aliases without a limit (a 1 KB "billion laughs" file becomes a structure whose printing runs for
minutes). :func:`load_yaml` refuses, in one line naming the file and the line: files over
:data:`MAX_SUITE_BYTES`, text that is not UTF-8, duplicate keys in a mapping, more than :data:`MAX_ALIASES`
aliases, and nesting deeper than :data:`MAX_DEPTH`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from bench.errors import SpecError

#: Largest suite file read (the shipped ones are under 5 KB).
MAX_SUITE_BYTES = 1_000_000
#: Aliases (``*name``) a suite file may use; the shipped ones use none.
MAX_ALIASES = 64
#: Deepest nesting of mappings and lists.
MAX_DEPTH = 32


class _Refused(yaml.YAMLError):
    def __init__(self, problem: str, mark: Any) -> None:
        super().__init__(problem)
        self.problem, self.problem_mark = problem, mark


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that counts aliases and depth while composing and refuses duplicate mapping keys."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._aliases = 0
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise _Refused(f"more than {MAX_ALIASES} aliases (*name); write the values out",
                               self.peek_event().start_mark)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(f"nested deeper than {MAX_DEPTH} levels", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: SafeLoader reports it below
                continue
            if first is not None:
                raise _Refused(f"duplicate key {key!r} (first at line {first.line + 1}); each key may appear once",
                               key_node.start_mark)
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: str | Path) -> Any:
    """Reads a suite file with the limits of this module.

    Raises:
        SpecError: The file cannot be read, is too large, is not UTF-8, is not YAML, or breaks a limit.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_SUITE_BYTES + 1)
    except OSError as err:
        raise SpecError(f"{path}: cannot read suite file ({err.strerror or err})") from err
    if len(raw) > MAX_SUITE_BYTES:
        raise SpecError(f"{path}: suite file is larger than {MAX_SUITE_BYTES} bytes")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise SpecError(f"{path}: not UTF-8 text (byte 0x{raw[err.start]:02x} at line {line}); suite files are "
                             f"UTF-8 YAML") from None
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise SpecError(f"{path}: invalid YAML{where}: {problem}") from None
