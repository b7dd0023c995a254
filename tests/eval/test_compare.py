"""vita.eval.compare: two eval reports paired case by case, with exact sign tests."""

from __future__ import annotations

import json
from math import comb

import pytest

from vita.errors import EvalError
from vita.eval.compare import compare, load_cases, markdown, sign_test


def test_sign_test_is_the_exact_two_sided_binomial() -> None:
    assert sign_test(0, 0) == 1.0
    assert sign_test(0, 5) == pytest.approx(2 / 32)
    assert sign_test(5, 0) == sign_test(0, 5)
    assert sign_test(3, 3) == 1.0  # capped: the two tails overlap at the centre
    assert sign_test(27, 19) == pytest.approx(2 * sum(comb(46, i) for i in range(20)) / 2**46)
    assert 0.29 < sign_test(27, 19) < 0.31 and sign_test(0, 20) < 1e-5


def _case(cid: str, group: str, *, answer=None, state=True, edits=None, ref=None) -> dict:
    return {"id": cid, "group": group, "answer_correct": answer, "state_correct": state, "edits": edits,
            "ref_units": ref, "rate_kind": "wer" if edits is not None else None}


def test_answers_states_and_wer_are_paired_per_group() -> None:
    a = {"1": _case("1", "image/colour/typed", answer=True), "2": _case("2", "image/count/spoken", answer=False),
         "3": _case("3", "image/count/typed", answer=True), "4": _case("4", "asr/clean", edits=4, ref=10),
         "5": _case("5", "asr/noisy", edits=1, ref=10, state=False)}
    b = {"1": _case("1", "image/colour/typed", answer=True), "2": _case("2", "image/count/spoken", answer=True),
         "3": _case("3", "image/count/typed", answer=False, state=False), "4": _case("4", "asr/clean", edits=0, ref=10),
         "5": _case("5", "asr/noisy", edits=1, ref=10)}
    got = compare(a, b)
    image = got["groups"]["image"]["answers"]
    assert (image["n"], image["both"], image["neither"], image["only_a"], image["only_b"]) == (3, 1, 0, 1, 1)
    assert image["rate_a"] == pytest.approx(2 / 3) and image["rate_b"] == pytest.approx(2 / 3)
    assert got["groups"]["image"]["states"]["only_a"] == 1
    wer = got["groups"]["asr"]["wer"]
    assert (wer["wer_a"], wer["wer_b"], wer["better_b"], wer["better_a"]) == (0.25, 0.05, 1, 0)
    assert "answers" not in got["groups"]["asr"]  # only the kinds a group has
    assert got["groups"]["all"]["states"]["n"] == 5 and got["cases"] == 5
    deeper = compare(a, b, depth=2)["groups"]
    assert deeper["image/count"]["answers"]["n"] == 2 and "image" not in deeper
    table = markdown(got, "base", "new")
    assert "| image | answers | 3 | 66.7 | 66.7 | +0.0 | only base 1, only new 1 | 1.000 |" in table
    assert "| asr | WER | 2 | 25.0 | 5.0 | -20.0 |" in table


def test_the_most_common_answer_shows_a_group_answered_by_one_constant() -> None:
    texts = ["2.", "3", "1"]
    a = {str(i): dict(_case(str(i), "image/count/typed", answer=i == 0), text=t) for i, t in enumerate(texts)}
    b = {str(i): dict(_case(str(i), "image/count/typed", answer=i == 0), text="2") for i in range(3)}
    got = compare(a, b)["groups"]["image"]["constant"]
    assert got["answer_b"] == "2" and got["share_b"] == 1.0 and got["share_a"] == pytest.approx(0.333)
    assert '| image | most common answer | | "2" 33.3 % | "2" 100.0 % |' in markdown(compare(a, b))


def test_reports_of_different_manifests_or_no_report_are_clear_errors(tmp_path) -> None:
    a = {"1": _case("1", "x", answer=True)}
    with pytest.raises(EvalError, match="different cases"):
        compare(a, {"2": _case("2", "x", answer=True)})
    bad = tmp_path / "r.json"
    bad.write_text(json.dumps({"wer": 0.1}))
    with pytest.raises(EvalError, match="not a `vita eval --out` report"):
        load_cases(bad)
    with pytest.raises(EvalError, match="cannot read"):
        load_cases(tmp_path / "missing.json")
    bad.write_text(json.dumps({"cases": [_case("1", "x", answer=True)]}))
    assert load_cases(bad)["1"]["answer_correct"] is True


def test_the_tool_prints_the_table_and_names_a_bad_input(tmp_path, capsys) -> None:
    from vita.cli.tools import main

    pa, pb = tmp_path / "a.json", tmp_path / "b.json"
    pa.write_text(json.dumps({"cases": [_case("1", "chat/x", answer=False), _case("2", "chat/y", answer=False)]}))
    pb.write_text(json.dumps({"cases": [_case("1", "chat/x", answer=True), _case("2", "chat/y", answer=True)]}))
    assert main(["compare_evals", str(pa), str(pb)]) == 0
    assert "| chat | answers | 2 | 0.0 | 100.0 | +100.0 | only A 0, only B 2 | 0.500 |" in capsys.readouterr().out
    assert main(["compare_evals", str(pa), str(tmp_path / "nope.json")]) == 2
    assert "nope.json: cannot read" in capsys.readouterr().err
