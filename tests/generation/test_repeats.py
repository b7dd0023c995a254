"""Replies that loop: which tails count as a loop, and how much of a looping reply is kept."""

from vita.generation.repeats import loop_kept, repeats_block, run_kept
from vita.generation.text import TextStream
from vita.presets import byte_tokenizer


def test_repeats_block_finds_a_short_block_said_again_and_again():
    assert repeats_block([9, 4] + [1, 2, 3] * 8, 24)  # a 3-id block, 8 times
    assert repeats_block([5] * 24, 24)  # one id
    assert repeats_block([9] + [1, 2, 3, 4, 5, 6, 7, 8] * 3, 24)  # 8 ids, three times
    assert not repeats_block(list(range(9)) * 3, 24)  # 9 ids thrice: longer than a third of the window
    assert not repeats_block([1, 2] * 11, 24)  # fewer ids than the window
    assert not repeats_block([3, 3, 3, 3, 3, 1] + [3] * 18, 24)  # a repeat broken inside the window
    assert not repeats_block(list(range(40)), 24)


def test_loop_kept_traces_the_run_back_and_keeps_its_first_block():
    assert loop_kept([9, 4] + [1, 2, 3] * 8, 24) == 5  # 9 4 1 2 3
    assert loop_kept([7] + [5] * 30, 24) == 2  # the run of 5s starts at index 1
    assert loop_kept([1, 2, 3, 4] + [3, 4] * 12, 24) == 4  # the period holds back to the first 3 4
    assert loop_kept([1, 2, 5, 6] + [3, 4] * 12, 24) == 6  # ... and no further
    assert loop_kept([9, 2] + [1, 2] * 12, 24) == 3  # a block may start mid-cycle: 9 then (2 1) repeated
    assert loop_kept(list(range(40)), 24) == 40  # no loop: everything
    assert loop_kept([5] * 10, 24) == 10  # shorter than the window: no loop yet


def test_a_stream_that_ends_in_a_loop_keeps_the_block_once():
    tok = byte_tokenizer()
    ids = tok.encode("<1>it goes ", add_special_tokens=False) + tok.encode("ha", add_special_tokens=False) * 20
    stream = TextStream(tok, loop_window=12)
    streamed = "".join(stream.push(i) for i in ids)
    streamed += stream.finish()
    assert streamed == "it goes hah"  # repeats held back; a second saying shows until it is complete ("h")
    assert stream.visible_text == "it goes ha" and tok.decode(stream.ids) == "<1>it goes ha"
    plain = TextStream(tok)  # loop_window 0 (the official models): nothing cut
    for i in ids:
        plain.push(i)
    plain.finish()
    assert plain.visible_text == "it goes " + "ha" * 20
    text = tok.encode("<1>ha ha, said she", add_special_tokens=False)  # no loop at the end: unchanged
    kept = TextStream(tok, loop_window=6)
    for i in text:
        kept.push(i)
    kept.finish()
    assert kept.visible_text == "ha ha, said she"


def test_run_kept_holds_back_what_follows_a_runs_first_block():
    assert run_kept([1, 2, 3, 3], 24) == 3  # one id said twice: the second waits
    assert run_kept([1, 2, 3, 4, 3, 4, 3], 24) == 4  # (3 4) twice and a bit: only the first 3 4 shown
    assert run_kept([7] + [5] * 10, 24) == 2
    assert run_kept([1, 2, 3], 24) == 3 and run_kept([], 24) == 0  # no run: everything
    assert run_kept(list(range(9)) * 2, 24) == 18  # a block longer than window // 3 is not a loop
    assert run_kept([4, 4, 4], 0) == 3  # off


def test_a_repeat_that_breaks_is_released_whole_and_in_order():
    tok = byte_tokenizer()
    stream = TextStream(tok, loop_window=24)
    shown = "".join(stream.push(i) for i in tok.encode("<3>ha ha ha ha", add_special_tokens=False))
    assert shown == "ha ha"  # " ha" said again: held back after its first saying
    shown += "".join(stream.push(i) for i in tok.encode(", said she", add_special_tokens=False))
    shown += stream.finish()
    assert shown == "ha ha ha ha, said she" == stream.visible_text  # the run broke: all of it, in order
