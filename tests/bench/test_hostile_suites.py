"""Hostile suite files and command lines: each is one line on stderr with exit 2 before any work, and nothing is
written (least of all outside ``--out``)."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.cli import main
from bench.spec import SpecError, load_suite_file, parse_suite


def base_suite() -> dict[str, Any]:
    return {
        "name": "hostile",
        "description": "a valid suite the tests break one key at a time",
        "seeds": [0],
        "trainer": {"max_epochs": 1, "limit_train_batches": 2, "limit_val_batches": 1},
        "eval": {"n_fake": 16, "backbone_size": 32},
        "tracks": [{"name": "gen", "primary_metric": "fid", "metrics": ["fid"],
                    "datamodules": {"digits": {"image_size": 8}},
                    "models": {"dcgan": {"latent_dim": 8, "width": 8}}}],
    }


def broken(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    """:func:`base_suite` with the key at ``path`` set to ``value``."""
    data = copy.deepcopy(base_suite())
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return data


def exit_code(argv: list[str]) -> int:
    """``bench`` on ``argv`` in this process; argparse's own errors exit through SystemExit."""
    try:
        return main(argv)
    except SystemExit as done:
        return int(done.code)


def one_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bench: error: "), err
    assert "Traceback" not in err
    return lines[0]


def run_bad(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str | bytes) -> str:
    suite = tmp_path / "in" / "suite.yaml"
    suite.parent.mkdir(exist_ok=True)
    suite.write_bytes(text if isinstance(text, bytes) else text.encode())
    out = tmp_path / "out"
    assert main(["run", "--suite", str(suite), "--out", str(out)]) == 2
    assert not out.exists(), "a refused suite must not create its output folder"
    return one_error(capsys)


TRAINER, EVAL, TRACK = ("trainer",), ("eval",), ("tracks", 0)
CASES = {
    "negative max_epochs": (TRAINER + ("max_epochs",), -1, "max_epochs"),
    "huge max_epochs": (TRAINER + ("max_epochs",), 10**23, "max_epochs"),
    "float max_epochs": (TRAINER + ("max_epochs",), 1e23, "max_epochs"),
    "nan limit": (TRAINER + ("limit_train_batches",), float("nan"), "limit_train_batches"),
    "negative limit": (TRAINER + ("limit_train_batches",), -0.5, "limit_train_batches"),
    "zero train limit": (TRAINER + ("limit_train_batches",), 0, "limit_train_batches"),
    "fractional limit above 1": (TRAINER + ("limit_train_batches",), 1.5, "limit_train_batches"),
    "n_fake 0": (EVAL + ("n_fake",), 0, "n_fake"),
    "kid_subsets 1e12": (EVAL + ("kid_subsets",), 10**12, "kid_subsets"),
    "kid subset size 1": (EVAL + ("kid_subset_size",), 1, "kid_subset_size"),
    "backbone size 100000": (EVAL + ("backbone_size",), 100000, "backbone_size"),
    "negative seed": (("seeds",), [-1], "seed"),
    "seed beyond uint32": (("seeds",), [2**32], "seed"),
    "escaping track": (TRACK + ("name",), "../../../escaped_track", "name"),
    "track with newline": (TRACK + ("name",), "gen\nx", "name"),
    "escaping suite name": (("name",), "../up", "name"),
    "escaping label": (TRACK + ("models",), {"../../../lbl": {"model": "dcgan"}}, "lbl"),
    "negative width": (TRACK + ("models",), {"dcgan": {"width": -8}}, "width"),
    "zero width": (TRACK + ("models",), {"dcgan": {"width": 0}}, "width"),
    "huge image": (TRACK + ("datamodules",), {"digits": {"image_size": 100000}}, "image_size"),
    "nan model arg": (TRACK + ("models",), {"dcgan": {"lr": float("nan")}}, "lr"),
    "list description": (("description",), [[1, 2]] * 3, "description"),
    "metric twice": (TRACK + ("metrics",), ["fid", "fid"], "metrics"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_value_is_one_line_before_any_work(case: str, tmp_path: Path, capsys) -> None:
    path, value, key = CASES[case]
    line = run_bad(tmp_path, capsys, yaml.safe_dump(broken(path, value)))
    assert "suite.yaml" in line and key in line, line


def test_two_tracks_of_one_name_are_refused() -> None:
    data = base_suite()
    data["tracks"].append(copy.deepcopy(data["tracks"][0]))
    with pytest.raises(SpecError, match="used twice"):
        parse_suite(data, "s.yaml")


def test_duplicate_key_is_refused_with_both_lines(tmp_path: Path, capsys) -> None:
    text = yaml.safe_dump(base_suite(), sort_keys=False) + "seeds: [1]\n"
    line = run_bad(tmp_path, capsys, text)
    assert "duplicate key 'seeds'" in line and "line 3" in line, line


def test_alias_bomb_is_refused_quickly(tmp_path: Path, capsys) -> None:
    """A 1 KB "billion laughs" in the description: refused by the alias limit, not expanded."""
    bomb = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i, name in enumerate("bcdefghi"):
        prev = "abcdefghi"[i]
        bomb.append(f"{name}: &{name} [{','.join(['*' + prev] * 9)}]")
    text = yaml.safe_dump(base_suite(), sort_keys=False).replace(
        "description: a valid suite the tests break one key at a time\n", "")
    text += "description:\n" + "\n".join("  " + line for line in bomb) + "\n"
    assert len(text) < 2000
    line = run_bad(tmp_path, capsys, text)
    assert "aliases" in line


def test_deep_nesting_and_huge_files_are_refused(tmp_path: Path, capsys) -> None:
    assert "nested deeper" in run_bad(tmp_path, capsys, "description: " + "[" * 100 + "]" * 100 + "\n")
    assert "larger than" in run_bad(tmp_path, capsys, "#" * 2_000_000)


def test_non_utf8_suite_file(tmp_path: Path, capsys) -> None:
    text = yaml.safe_dump(base_suite(), sort_keys=False).encode().replace(b"a valid suite", b"a valid \xff suite")
    line = run_bad(tmp_path, capsys, text)
    assert "not UTF-8" in line and "line 2" in line


def test_merge_keys_still_work(tmp_path: Path) -> None:
    """YAML merge keys (`<<: *x`) are not duplicate keys."""
    text = yaml.safe_dump(base_suite(), sort_keys=False) + "trainer_defaults: &t {max_epochs: 1}\n"
    text = text.replace("trainer_defaults: &t {max_epochs: 1}\n", "")
    text = text.replace("trainer:\n", "trainer: &t\n", 1)
    path = tmp_path / "s.yaml"
    path.write_text(text.replace("eval:\n", "eval_ignored: 1\neval:\n", 1).replace("eval_ignored: 1\n", ""))
    assert load_suite_file(path).tracks[0].trainer.max_epochs == 1


@pytest.mark.parametrize("argv", [["--seeds", "-1"], ["--seeds", "4294967296"], ["--datamodule", "nope"],
                                  ["--models", "nope"], ["--max-epochs", "0"], ["--limit-batches", "nan"]])
def test_bad_command_line_values(argv: list[str], tmp_path: Path, capsys) -> None:
    suite = tmp_path / "s.yaml"
    suite.write_text(yaml.safe_dump(base_suite()))
    out = tmp_path / "out"
    assert exit_code(["run", "--suite", str(suite), "--out", str(out), *argv]) == 2
    one_error(capsys)
    assert not out.exists()


def test_out_that_is_a_file(tmp_path: Path, capsys) -> None:
    suite = tmp_path / "s.yaml"
    suite.write_text(yaml.safe_dump(base_suite()))
    (tmp_path / "file").write_text("x")
    for out in (tmp_path / "file", tmp_path / "file" / "below"):
        assert main(["run", "--suite", str(suite), "--out", str(out)]) == 2
        assert "--out" in one_error(capsys)
    assert (tmp_path / "file").read_text() == "x"


def test_bad_model_arguments_fail_in_preflight(tmp_path: Path, capsys, monkeypatch) -> None:
    """Values only the model can judge: a wrong type, and a size whose model would not fit in memory (counted on
    the meta device, never allocated)."""
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    for args, expected in (({"lr": "fast"}, "'lr' must be float"), ({"latent_dim": 9_000_000}, "parameters")):
        suite = tmp_path / "s.yaml"
        suite.write_text(yaml.safe_dump(broken(TRACK + ("models",), {"dcgan": args})))
        out = tmp_path / "out"
        assert main(["run", "--suite", str(suite), "--out", str(out)]) == 2
        assert expected in one_error(capsys)
        assert not (out / "results.csv").exists()


def test_suite_errors_need_no_heavy_import(tmp_path: Path) -> None:
    """The whole `bench run` of a bad suite file runs without importing torch (so it fails in well under 2 s;
    benchmarks/bad_suite_latency.py prints the time)."""
    suite = tmp_path / "s.yaml"
    suite.write_text(yaml.safe_dump(broken(TRACK + ("models",), {"nosuchmodel": {}})))
    code = ("import sys; from bench.cli import main; rc = main(['run', '--suite', sys.argv[1]]); "
            "print(rc, 'torch' in sys.modules, 'lightning' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code, str(suite)], capture_output=True, text=True, cwd=tmp_path)
    assert done.stdout.split() == ["2", "False", "False"], done.stdout + done.stderr
    assert "unknown model 'nosuchmodel'" in done.stderr
