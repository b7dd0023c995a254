"""`python -m vita.cli.tools duplex_compare`: two public duplex reports paired case by case."""

from __future__ import annotations

import json

import pytest

from vita.bench.duplex_compare import compare, load_cases
from vita.errors import EvalError
from vita.eval.compare import sign_test


def _cases(answered: list[int], silent: list[int]) -> list[dict]:
    rows = [{"name": f"interruption-{i}", "family": "interruption", "n": 1, "tor": 1.0, "respond": float(a)}
            for i, a in enumerate(answered)]
    rows += [{"name": f"talking-to-others-{i}", "family": "talking_to_others", "n": 1, "c_respond": float(1 - s),
              "c_resume": float(s), "c_unknown": 0.0} for i, s in enumerate(silent)]
    return rows


def test_cases_are_paired_and_counted_per_family():
    a = _cases([0, 0, 0, 1, 1, 0], [1, 1, 1, 1])
    b = _cases([1, 1, 1, 1, 0, 0], [1, 1, 0, 1])
    rows = {(r.family, r.outcome): r for r in compare(a, b)}
    ans = rows["interruption", "answered"]
    assert (ans.n, ans.a, ans.b, ans.gained, ans.lost) == (6, 2, 4, 3, 1) and ans.p == sign_test(3, 1)
    tor = rows["interruption", "takeover"]
    assert (tor.a, tor.b, tor.gained, tor.lost, tor.p) == (6, 6, 0, 0, 1.0)
    silent = rows["talking_to_others", "silent"]
    assert (silent.n, silent.a, silent.b, silent.gained, silent.lost) == (4, 4, 3, 0, 1)
    assert ("pause", "no takeover") not in rows  # a family neither report ran has no row


def test_other_sets_are_refused_and_bad_files_named(tmp_path, capsys):
    a = _cases([1, 0], [1])
    with pytest.raises(EvalError, match="not the same cases"):
        compare(a, _cases([1, 0, 1], [1]))
    good, bad = tmp_path / "a.json", tmp_path / "b.json"
    good.write_text(json.dumps({"public": {"cases": a}}))
    bad.write_text(json.dumps({"scenarios": []}))
    assert load_cases(good) == a
    with pytest.raises(EvalError, match="b.json: no public.cases"):
        load_cases(bad)
    with pytest.raises(EvalError, match="no such file"):
        load_cases(tmp_path / "missing.json")
    from vita.cli.tools import main

    assert main(["duplex_compare", str(good), str(good)]) == 0
    assert "| interruption | answered | 1/2 | 1/2 | 0 / 0 | 1 |" in capsys.readouterr().out
    assert main(["duplex_compare", str(good), str(bad)]) != 0
    assert "no public.cases" in capsys.readouterr().err
