"""The ``fastquant`` command line: ``bench`` cross-checks the backends and exits non-zero on a mismatch."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from early_interrupts import ENTRIES, interrupt, write_input
from fastquant.cli import main

SMALL = ["bench", "--rows", "3000", "--bits", "72", "--batch", "5", "-k", "7", "--repeats", "1"]


def test_bench_prints_agreement_and_rates(capsys):
    assert main(SMALL) == 0
    out = capsys.readouterr().out
    assert "identical results: numba, numpy" in out  # numba checked against another backend
    assert "queries/s" in out and "numba speed-up" in out


def test_bench_exits_non_zero_on_mismatch(capsys, monkeypatch):
    from fastquant.backends import numpy_backend

    original = numpy_backend.NumpyBackend.topk
    monkeypatch.setattr(
        numpy_backend.NumpyBackend,
        "topk",
        lambda self, *a: (lambda d, i: (d, i[:, ::-1].copy()))(*original(self, *a)),
    )
    assert main(SMALL) == 1
    assert "MISMATCH numpy" in capsys.readouterr().out


def test_bench_cross_checks_the_asymmetric_engines(capsys, monkeypatch):
    assert main(SMALL) == 0
    out = capsys.readouterr().out
    assert "asymmetric scan" in out and out.count("identical results") == 2
    from fastquant._engine import asymmetric

    original = asymmetric._numpy_topk
    monkeypatch.setattr(
        asymmetric,
        "_numpy_topk",
        lambda *a: (lambda k, i: (k, i[:, ::-1].copy()))(*original(*a)),
    )
    assert main(SMALL) == 1
    assert "MISMATCH numpy: differs from numba" in capsys.readouterr().out


def test_bad_arguments_are_one_line_errors(capsys):
    assert main(["bench", "--rows", "10", "--bits", "12", "--repeats", "1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("fastquant: error:") and "multiple of 8" in err


def test_unknown_command_exits_with_usage():
    with pytest.raises(SystemExit) as exit_info:
        main(["frobnicate"])
    assert exit_info.value.code == 2


def test_defaults_and_choices_come_from_the_modules_that_own_them(capsys):
    from fastquant import embed, texts, web
    from fastquant.backends import BACKEND_NAMES
    from fastquant.cli import build_parser
    from fastquant.demo import DEMO_K

    parser = build_parser()
    args = parser.parse_args(["index", "in.csv", "--store", "s", "--text-column", "t"])
    assert (args.batch_size, args.calibration_rows) == (
        embed.DEFAULT_BATCH_ROWS,
        embed.DEFAULT_CALIBRATION_ROWS,
    )
    args = parser.parse_args(["search", "s", "query"])
    assert (args.k, args.rescore_multiplier, args.backend) == (
        texts.DEFAULT_K,
        texts.DEFAULT_RESCORE_MULTIPLIER,
        texts.DEFAULT_BACKEND,
    )
    assert parser.parse_args(["demo"]).k == DEMO_K
    args = parser.parse_args(["serve"])
    assert (args.host, args.port) == (web.DEFAULT_HOST, web.DEFAULT_PORT)
    for name in BACKEND_NAMES:
        assert parser.parse_args(["search", "s", "q", "--backend", name]).backend == name
    with pytest.raises(SystemExit):
        parser.parse_args(["search", "s", "q", "--backend", "annoy"])
    assert ", ".join(map(repr, BACKEND_NAMES)) in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["serve", "--port", "99999"], "--port must be a TCP port from 1 to 65535, got 99999"),
        (["serve", "--port", "-1"], "--port must be a TCP port from 1 to 65535, got -1"),
        (["bench", "--repeats", "0"], "--repeats must be positive, got 0"),
        (["bench", "--rows", "-1"], "--rows must be positive, got -1"),
        (["bench", "--rows", "0"], "--rows must be positive, got 0"),
        (["bench", "--batch", "0"], "--batch must be positive, got 0"),
        (["bench", "-k", "0"], "-k must be positive, got 0"),
        (["bench", "--threads", "0"], "--threads must be positive, got 0"),
        (["search", "s", "q", "--rescore-multiplier", "0"], "--rescore-multiplier must be"),
        (["index", "in.csv", "--store", "s", "--batch-size", "0"], "--batch-size must be positive"),
        (["index", "in.csv", "--store", "s", "--calibration-rows", "-5"], "--calibration-rows"),
        (["demo", "-k", "-3"], "-k must be positive, got -3"),
    ],
)
def test_integer_options_are_checked_before_anything_runs(capsys, argv, message):
    """Issue 17: an OverflowError traceback, ``nan`` q/s, "negative dimensions are not allowed"."""
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err == f"fastquant: error: {message}" + err[len("fastquant: error: ") + len(message) :]
    assert err.count("\n") == 1


def test_every_integer_option_has_a_rule():
    from fastquant.cli import INTEGER_OPTIONS, build_parser

    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    integer_options = {
        action.dest
        for command in commands.choices.values()
        for action in command._actions
        if action.type is int
    }
    assert integer_options == set(INTEGER_OPTIONS)


def test_importing_fastquant_loads_nothing_heavy():
    """The command's entry must be reached before NumPy and Numba load (Ctrl-C handling)."""
    code = (
        "import sys, fastquant, fastquant.__main__\n"
        "heavy = {'numpy', 'numba', 'pyarrow'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
        "assert fastquant.CorpusStore.__name__ == 'CorpusStore' and 'numba' in sys.modules\n"
        "assert fastquant.store.CorpusStore is fastquant.CorpusStore\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("entry", list(ENTRIES))
def test_ctrl_c_while_fastquant_loads_exits_130_without_a_traceback(tmp_path, entry):
    """Issue 17: a traceback and exit status -2 instead of 130. SIGINT comes once NumPy is
    loaded (past the interpreter's own start-up, which no Python code guards), while the
    rest loads and the command starts (``tests/early_interrupts.py`` measures random times)."""
    input_file = write_input(tmp_path)
    outcomes = [
        interrupt(entry, delay, input_file, tmp_path / f"store-{i}", after="numpy")
        for i, delay in enumerate((0.0, 0.05, 0.2, 0.5, 1.0))
    ]
    assert [outcome for outcome, _ in outcomes] == ["130"] * 5, outcomes


def test_an_interrupt_that_became_another_exception_still_exits_130(capsys, monkeypatch):
    """NumPy's import turns Ctrl-C into ImportError, usearch into MemoryError."""
    from fastquant import commands, interrupts

    def bench_failing(args):
        raise MemoryError("std::bad_alloc")

    monkeypatch.setattr(commands, "bench", bench_failing)
    with pytest.raises(MemoryError):  # without Ctrl-C, a bug shows its traceback
        main(["bench"])
    monkeypatch.setattr(interrupts, "_interrupted", True)  # what the SIGINT handler records
    assert main(["bench"]) == 130
    assert capsys.readouterr().err == "fastquant: interrupted\n"
