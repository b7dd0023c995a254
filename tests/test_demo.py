"""`python -m vita.demo`: a bad model argument is a clear message and exit 2, never a traceback."""

import pytest

from vita.demo import main


def test_unknown_model_is_a_message_and_exit_2(capsys, tmp_path) -> None:
    assert main([str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "cannot load" in err and "missing" in err and "Traceback" not in err


def test_help_exits_cleanly(capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0
    assert "vita-mini" in capsys.readouterr().out
