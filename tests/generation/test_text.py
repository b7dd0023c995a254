"""Incremental detokenization: state token split off, stop strings cut, deltas add up to the final text."""

from vita.generation.text import TextStream
from vita.presets import byte_tokenizer


def _run(text: str, stops=("</s>",)):
    tok = byte_tokenizer()
    ids = tok.encode(text, add_special_tokens=False)
    stream = TextStream(tok, stop_strings=stops)
    deltas = [stream.push(i) for i in ids]
    deltas.append(stream.finish())
    return stream, deltas


def test_state_token_is_reported_not_shown():
    stream, deltas = _run("<1>The answer is 4.</s>ignored")
    assert stream.state == "<1>"
    assert "".join(deltas) == "The answer is 4."
    assert stream.stopped and stream.visible_text == "The answer is 4."
    assert all("<" not in d for d in deltas)


def test_not_query_state_gives_no_text():
    stream, deltas = _run("<2></s>")
    assert stream.state == "<2>" and "".join(deltas) == ""


def test_no_state_and_text_that_starts_like_one():
    stream, deltas = _run("<b>bold</b> x")
    assert stream.state is None and "".join(deltas) == "<b>bold</b> x"


def test_multibyte_characters_are_never_split():
    stream, deltas = _run("<3>你好, wörld")
    assert stream.state == "<3>"
    assert "".join(deltas) == "你好, wörld"
    assert all("\ufffd" not in d for d in deltas)


def test_partial_stop_string_is_held_then_released():
    # one byte per id: "<" and "</" could still become "</s>", so they wait until " " rules it out
    stream, deltas = _run("a </ b")
    assert deltas == ["a", " ", "", "", "</ ", "b", ""]
    assert not stream.stopped and stream.visible_text == "a </ b"


def test_held_back_prefix_is_dropped_when_the_stop_string_completes():
    stream, deltas = _run("a </s> b")
    assert deltas == ["a", " ", "", "", "", ""]  # nothing of "</s>" was shown, nothing after it is read
    assert stream.stopped and stream.visible_text == "a"


def test_held_back_prefix_is_released_when_the_ids_end():
    _, deltas = _run("a </s")
    assert deltas == ["a", " ", "", "", "", "</s"]
