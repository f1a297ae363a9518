"""The terminal: one-line warnings once, one line per finished unit, a summary table, --version, --help."""

from __future__ import annotations

import io
import subprocess
import sys
import warnings
from types import SimpleNamespace

import pytest

from bench.callbacks import QuietProgressBar
from bench.cli import build_parser, main, print_summary
from bench.console_warnings import one_line_warnings
from bench.runner import result_line
from bench.suites import load_suite


def test_each_warning_once_in_one_line_without_paths() -> None:
    stream = io.StringIO()
    with one_line_warnings(stream):
        for _ in range(3):  # the small-sample FID warning used to repeat after every generator run
            warnings.warn("FID with 359 real / 32 generated samples,\n  rank-deficient", UserWarning)
        warnings.warn("another one", RuntimeWarning)
    lines = stream.getvalue().splitlines()
    assert lines == ["bench: warning: FID with 359 real / 32 generated samples, rank-deficient",
                     "bench: warning: another one"]
    assert warnings.showwarning.__module__ == "warnings"  # restored


def test_progress_bar_drops_the_logger_version() -> None:
    bar = QuietProgressBar()
    trainer = SimpleNamespace(progress_bar_metrics={"train_loss": 0.5}, loggers=[SimpleNamespace(version="seed0")])
    items = bar.get_metrics(trainer, None)
    assert "v_num" not in items and items["train_loss"] == 0.5


def test_one_line_per_finished_unit() -> None:
    track = load_suite("quick").tracks[0]
    ok = [{"status": "ok", "metric": "kid", "value": 0.1234567, "wall_s": 9.04, "message": ""},
          {"status": "ok", "metric": "fid", "value": 178.51, "wall_s": 9.04, "message": ""}]
    assert result_line(track, ok) == "ok: fid 178.5, 9.0 s"
    failed = [{"status": "failed", "metric": "fid", "value": float("nan"), "wall_s": 1.0, "message": "ValueError: x"}]
    assert result_line(track, failed) == "failed: ValueError: x"


def test_summary_table_instead_of_raw_markdown(capsys) -> None:
    spec = load_suite("quick")
    board = [{"track": "generation", "model": "dcgan", "datamodule": "digits", "n_seeds": 3, "status": "ok",
              "fid_mean": 178.5, "fid_std": 4.1}]
    print_summary(spec, board)
    out = capsys.readouterr().out
    assert "dcgan" in out and "178.5 ± 4.1" in out and "|---|" not in out


def test_version_needs_no_heavy_import() -> None:
    code = "import sys; from bench.cli import main; main(['--version'])"
    done = subprocess.run([sys.executable, "-c", code + "\n"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("bench 0."), done.stdout + done.stderr
    check = "import sys; from bench.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", check], capture_output=True, text=True).stdout.strip() == "False"


@pytest.mark.parametrize("command", ["run", "eval", "report", "list"])
def test_help_shows_defaults_and_help_for_every_option(command: str, capsys) -> None:
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    if command == "run":
        assert "(default: 2)" in text  # --max-retries
    parser = build_parser()
    sub = next(a for a in parser._actions if a.choices and command in a.choices).choices[command]
    assert all(a.help for a in sub._actions), [a.dest for a in sub._actions if not a.help]


def test_list_shows_a_description_and_where_data_comes_from(capsys) -> None:
    assert main(["list", "datamodules"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "[offline: ships with scikit-learn]" in lines["digits"]
    assert "[hub:" in lines["cifar10"] and "1,797 images" in lines["digits"]
    assert main(["list", "models"]) == 0
    models = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "DCGAN" in models["dcgan"] and len(models["dcgan"]) < 140
