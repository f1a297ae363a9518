"""Property-based fuzzing of suite files and ``bench run`` command lines through the real CLI in subprocesses.

Suite files are a valid tiny suite with one to three mutations (a value replaced by a hostile one, a key deleted,
an unknown key added, a key renamed), or its YAML text with bytes flipped; command lines are the valid suite with
random options and hostile values. Every case runs ``bench run ... --dry-run`` (the whole preflight, nothing
trained) into an ``--out`` holding an earlier result, and must satisfy :func:`tests.fuzz.harness.check`.
Examples are derandomized by default (the same cases on every CI run); ``--fuzz-long`` draws many more, freshly.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.harness import LONG, Sandbox, check, examples, report, seed_earlier_result

FUZZ = settings(deadline=None, database=None, derandomize=not LONG, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

BASE: dict[str, Any] = {
    "name": "fuzz",
    "description": "tiny suite the fuzz harness mutates",
    "seeds": [0],
    "trainer": {"max_epochs": 1, "limit_train_batches": 2, "limit_val_batches": 1},
    "eval": {"n_fake": 16, "batch_size": 16, "backbone_size": 32, "kid_subsets": 2, "kid_subset_size": 8},
    "tracks": [{"name": "gen", "primary_metric": "kid", "metrics": ["kid", "mse"],
                "datamodules": {"digits": {"image_size": 8, "batch_size": 32}},
                "models": {"dcgan": {"latent_dim": 8, "width": 8}}}],
}

HOSTILE_STRINGS = ["", "../../../escaped", "/etc/passwd", "a\nb", "gen", "dcgan", "digits", "fid", "x" * 300,
                   "ü", "$HOME", "~", "nan", "-1", "0", "1e23", "null", "ddp", "16-mixed", "test", "clip-score"]
HOSTILE = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, 2, -1, 7, 100000, 2**32, 10**23]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(HOSTILE_STRINGS),
    st.text(max_size=12),
    st.booleans(),
    st.none(),
    st.lists(st.sampled_from([0, 1, -1, "x", None, 2.5]), max_size=4),
    st.dictionaries(st.sampled_from(["a", "model", "width", "../x", "lr"]), st.sampled_from([0, -3, "y", 1.5]),
                    max_size=2),
)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path in ``node`` (mappings by key, lists by index)."""
    out = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, value in items:
        out.append(prefix + (key,))
        out.extend(_paths(value, prefix + (key,)))
    return out


PATHS = _paths(BASE)


@st.composite
def mutated_suites(draw) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS))
        parent = data
        try:
            for key in path[:-1]:
                parent = parent[key]
            parent[path[-1]]  # noqa: B018 - the path may have been removed by an earlier mutation
        except (KeyError, IndexError, TypeError):
            continue
        op = draw(st.sampled_from(["replace", "replace", "replace", "delete", "add", "rename"]))
        if op == "replace":
            parent[path[-1]] = draw(HOSTILE)
        elif op == "delete":
            del parent[path[-1]]
        elif op == "add" and isinstance(parent, dict):
            parent[draw(st.sampled_from(["extra", "models", "../k", "tracks", "x y"]))] = draw(HOSTILE)
        elif op == "rename" and isinstance(parent, dict):
            parent[draw(st.sampled_from(HOSTILE_STRINGS[:8]))] = parent.pop(path[-1])
    return data


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> Sandbox:
    box = Sandbox(tmp_path_factory.mktemp("fuzz-suites"))
    yield box
    report("suites", box)


def _run_case(sandbox: Sandbox, name: str, suite_bytes: bytes, extra: list[str]) -> str:
    case_dir = sandbox.work / f"case{sum(sandbox.tally.values())}"
    shutil.rmtree(case_dir, ignore_errors=True)
    case_dir.mkdir()
    suite, out = sandbox.inputs / "suite.yaml", case_dir / "out"
    suite.write_bytes(suite_bytes)
    earlier = seed_earlier_result(out)
    before = sandbox.files()
    done = sandbox.run(["run", "--suite", str(suite), "--out", str(out), "--dry-run", *extra])
    return check(sandbox, f"{name}\nsuite: {suite_bytes[:2000]!r}\nargs: {extra}", done, out, before, earlier)


@settings(FUZZ, max_examples=examples(30, 150))
@given(data=mutated_suites())
def test_fuzz_suite_files(sandbox: Sandbox, data: dict[str, Any]) -> None:
    try:
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True).encode()
    except yaml.YAMLError:
        return
    _run_case(sandbox, "mutated suite", text, [])


@settings(FUZZ, max_examples=examples(8, 50))
@given(flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4))
def test_fuzz_suite_bytes(sandbox: Sandbox, flips: list[tuple[int, int]]) -> None:
    raw = bytearray(yaml.safe_dump(BASE, sort_keys=False).encode())
    for at, byte in flips:
        raw[at % len(raw)] = byte
    _run_case(sandbox, "flipped bytes", bytes(raw), [])


OPTION_VALUES = st.one_of(st.sampled_from(["0", "1", "2", "-1", "nan", "inf", "1e30", "0.5", "abc", "", "../x",
                                           "dcgan", "digits", "16-mixed", "bf16", "ddp", "all", "0,0", "0,1",
                                           "cpu", "gpu", "local", "ray", "4294967296"]),
                          st.text(max_size=6))
OPTIONS = ["--models", "--datamodule", "--seeds", "--max-epochs", "--limit-batches", "--precision", "--strategy",
           "--num-nodes", "--accumulate-grad-batches", "--checkpoint-every", "--rerun", "--launcher",
           "--threads-per-unit", "--max-retries", "--accelerator", "--devices", "--backbone-weights", "--ray-address"]
FLAGS = ["--fast", "--no-deterministic", "--json"]


@settings(FUZZ, max_examples=examples(20, 100))
@given(options=st.lists(st.tuples(st.sampled_from(OPTIONS), OPTION_VALUES), max_size=3),
       flags=st.lists(st.sampled_from(FLAGS), max_size=2, unique=True))
def test_fuzz_run_arguments(sandbox: Sandbox, options: list[tuple[str, str]], flags: list[str]) -> None:
    extra = [part for option, value in options for part in (option, value)] + flags
    if "--launcher" in extra and extra[extra.index("--launcher") + 1] == "ray":
        return  # starting a Ray instance per example is the Ray tests' job (tests/bench/test_ray_launcher.py)
    _run_case(sandbox, "argument vector", yaml.safe_dump(BASE).encode(), extra)
