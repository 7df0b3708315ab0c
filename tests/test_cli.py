"""The ``fastquant`` command line: ``bench`` cross-checks the backends and exits non-zero on a mismatch."""

from __future__ import annotations

import pytest

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
