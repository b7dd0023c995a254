"""The resumable runner: a killed run resumes and ends with the same report; mismatched runs are refused;
batching, item errors, progress, and the `vita eval BENCH` command line."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from io import StringIO
from pathlib import Path

import pytest

from vita.cli.eval import main
from vita.errors import EvalError, MediaError
from vita.eval.bench import get
from vita.eval.bench.core import Options
from vita.eval.bench.runner import run_benchmark

N = 40


@pytest.fixture
def mmlu(tmp_path: Path) -> Path:
    (tmp_path / "data" / "test").mkdir(parents=True)
    with (tmp_path / "data" / "test" / "anatomy_test.csv").open("w", newline="") as f:
        csv.writer(f).writerows([[f"Question {i}?", "w", "x", "y", "z", "ABCD"[i % 4]] for i in range(N)])
    return tmp_path / "data"


def _answer(text, **_):  # right on every third question
    i = int(text.split("Question ")[1].split("?")[0].split()[0])
    return "ABCD"[i % 4] if i % 3 == 0 else "ABCD"[(i + 1) % 4]


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_truncated_predictions_resume_to_the_same_report(mmlu, tmp_path, fake):
    full = run_benchmark(get("mmlu"), mmlu, fake(_answer), out_dir=tmp_path / "a", model_name="m")
    assert full["metrics"]["correct"] == 14  # i = 0, 3, ..., 39
    preds = tmp_path / "a" / "predictions.jsonl"
    assert len(_lines(preds)) == N + 1 and json.loads(_lines(preds)[0])["header"]["bench"] == "mmlu"
    # a kill mid-write: header + 5 whole lines + half of the 6th
    (tmp_path / "b").mkdir()
    raw = preds.read_bytes().split(b"\n")
    (tmp_path / "b" / "predictions.jsonl").write_bytes(b"\n".join(raw[:6]) + b"\n" + raw[6][:20])
    model = fake(_answer)
    resumed = run_benchmark(get("mmlu"), mmlu, model, out_dir=tmp_path / "b", model_name="m")
    assert len(model.calls) == N - 5  # only the missing items ran
    assert resumed == full
    assert (tmp_path / "b" / "report.md").read_text() == (tmp_path / "a" / "report.md").read_text()
    ids = [json.loads(x)["id"] for x in _lines(tmp_path / "b" / "predictions.jsonl")[1:]]
    assert len(ids) == len(set(ids)) == N
    again = fake(_answer)
    assert run_benchmark(get("mmlu"), mmlu, again, out_dir=tmp_path / "b", model_name="m") == full
    assert again.calls == []  # nothing left to run


KILLED_RUN = """
import sys, time
from dataclasses import dataclass, field
from pathlib import Path
from vita.eval.bench import get
from vita.eval.bench.runner import run_benchmark

@dataclass
class R:
    state: str
    text: str
    token_ids: list = field(default_factory=lambda: [1])
    finish_reason: str = "stop"

class Slow:
    def generate(self, text=None, **kw):
        time.sleep(0.05)
        i = int(text.split("Question ")[1].split("?")[0])
        return R("<3>", "ABCD"[i % 4] if i % 3 == 0 else "ABCD"[(i + 1) % 4])

run_benchmark(get("mmlu"), Path(sys.argv[1]), Slow(), out_dir=Path(sys.argv[2]), model_name="m")
"""


def test_kill9_mid_run_then_resume(mmlu, tmp_path, fake):
    script = tmp_path / "run.py"
    script.write_text(KILLED_RUN)
    out = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen([sys.executable, str(script), str(mmlu), str(out)], env=env)
    preds = out / "predictions.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (preds.exists() and len(_lines(preds)) > 8):
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(_lines(preds)) - 1
    assert 8 <= done < N, "the run should have been killed part-way"
    assert not (out / "report.json").exists()
    model = fake(_answer)
    resumed = run_benchmark(get("mmlu"), mmlu, model, out_dir=out, model_name="m")
    assert len(model.calls) == N - done
    full = run_benchmark(get("mmlu"), mmlu, fake(_answer), out_dir=tmp_path / "full", model_name="m")
    assert resumed == full


def test_refuses_to_mix_runs(mmlu, tmp_path, fake):
    run_benchmark(get("mmlu"), mmlu, fake(_answer), out_dir=tmp_path / "o", model_name="m", options=Options(limit=3))
    with pytest.raises(EvalError, match="different run .*differs in model"):
        run_benchmark(get("mmlu"), mmlu, fake(_answer), out_dir=tmp_path / "o", model_name="other")
    with pytest.raises(EvalError, match="differs in max_new_tokens"):
        run_benchmark(get("mmlu"), mmlu, fake(_answer), out_dir=tmp_path / "o", model_name="m", max_new_tokens=5)
    # a wider --limit continues the same run; a changed prompt is refused
    model = fake(_answer)
    r = run_benchmark(get("mmlu"), mmlu, model, out_dir=tmp_path / "o", model_name="m", options=Options(limit=5))
    assert len(model.calls) == 2 and r["n_items"] == 5 and r["limit"] == 5
    csv_path = mmlu / "test" / "anatomy_test.csv"
    csv_path.write_text(csv_path.read_text().replace("Question 1?", "Question 1 (changed)?"))
    with pytest.raises(EvalError, match="different prompt or media .*anatomy/1"):
        run_benchmark(get("mmlu"), mmlu, fake(_answer), out_dir=tmp_path / "o", model_name="m")
    model = fake(_answer)
    run_benchmark(get("mmlu"), mmlu, model, out_dir=tmp_path / "o", model_name="m", restart=True)
    assert len(model.calls) == N


def test_batches_errors_and_progress(mmlu, tmp_path, fake):
    def answer(text, **kw):
        if "Question 7?" in text:
            raise MediaError("image x.png: not an image")
        return _answer(text)

    model = fake(answer, batch=True)
    log = StringIO()
    r = run_benchmark(get("mmlu"), mmlu, model, out_dir=tmp_path / "o", model_name="m", batch_size=16, progress=log)
    assert model.batches == [16, 16, 8]  # the failing batch is retried one by one (16 calls more)
    assert r["errors"] == {"anatomy/7": "image x.png: not an image"}
    assert r["metrics"]["correct"] == 14 - 0  # item 7 was wrong anyway (7 % 3 != 0)
    lines = log.getvalue().splitlines()
    assert lines[-1].startswith("mmlu [########################] 40/40 100.0%") and "ETA" in lines[-1]
    assert "## Items that could not run (1" in (tmp_path / "o" / "report.md").read_text()


def test_cli_benchmark_form_on_tiny_random(mmlu, tmp_path, capsys):
    out = tmp_path / "cli"
    rc = main(["mmlu", "--data", str(mmlu), "--model", "tiny-random", "--limit", "2", "--max-new-tokens", "2",
               "--out-dir", str(out), "--json", "--quiet"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    report = json.loads(captured.out)
    assert report["n_items"] == 2 and report["settings"]["max_new_tokens"] == 2 and report["model"] == "tiny-random"
    assert (out / "report.md").read_text().startswith("# vita eval mmlu")
    assert main(["mmlu", "--model", "tiny-random"]) == 2
    assert "needs --data PATH" in capsys.readouterr().err
    assert main(["mmlu", "--data", str(tmp_path / "nope")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main([]) == 2 and "give a benchmark" in capsys.readouterr().err
