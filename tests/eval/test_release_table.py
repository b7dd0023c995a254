"""vita.eval.release_table: one row of headline figures per eval folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vita.cli.tools import main as tools_main
from vita.errors import EvalError
from vita.eval.release_table import markdown, row


def _case(cid: str, group: str, *, answer=None, edits=None, ref=None) -> dict:
    return {"id": cid, "group": group, "answer_correct": answer, "edits": edits, "ref_units": ref}


def _write(folder: Path, name: str, cases: list[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps({"cases": cases}))


def test_a_row_reads_each_family_and_the_optional_reports(tmp_path: Path) -> None:
    _write(tmp_path, "all", [
        _case("1", "image/colour/typed", answer=True), _case("2", "image/count/typed", answer=False),
        _case("3", "image/colour/spoken", answer=True), _case("4", "video/order/typed", answer=False),
        _case("5", "video/order/spoken", answer=True), _case("6", "naming/colour", answer=True),
        _case("7", "naming/line_seen", answer=False), _case("8", "asr/clean", edits=3, ref=10),
        _case("9", "asr/noisy", edits=1, ref=30), _case("10", "negatives/noise")])
    got = row(tmp_path)
    assert got.answers == pytest.approx(3 / 5)  # the naming cases and the unscored ones left out
    assert (got.image_typed, got.image_spoken, got.video_typed, got.video_spoken) == (0.5, 1.0, 0.0, 1.0)
    assert got.naming == 0.5 and got.wer == pytest.approx(4 / 40)  # corpus WER, not the mean of the clips'
    assert got.real_speech_wer is None and got.chat_typed is None
    _write(tmp_path, "real_speech", [_case("r1", "real/jfk", edits=2, ref=8), _case("r2", "real/x", edits=0, ref=2)])
    _write(tmp_path, "chat_typed", [_case("c1", "chat/arithmetic/typed", answer=True),
                                    _case("c2", "chat/arithmetic/typed", answer=False)])
    got = row(tmp_path)
    assert got.real_speech_wer == pytest.approx(0.2) and got.chat_typed == 0.5
    table = markdown([got])
    assert f"| {tmp_path} | 60.0 | 50.0 / 100.0 | 0.0 / 100.0 | 50.0 | 10.0 | 20.0 | 50.0 |" in table


def test_a_folder_without_its_main_report_is_named_in_the_error(tmp_path: Path, capsys) -> None:
    with pytest.raises(EvalError, match="no all.json"):
        row(tmp_path)
    _write(tmp_path / "broken", "all", [])
    (tmp_path / "broken" / "all.json").write_text("{not json")
    assert tools_main(["release_table", str(tmp_path / "broken")]) != 0
    assert "cannot read the evaluation report" in capsys.readouterr().err
