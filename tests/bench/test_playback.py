"""The bench client's speaker model: silence inside a reply, and where it first ran dry."""

from vita.bench.playback import Player


def test_the_player_counts_the_silence_inside_a_reply():
    p = Player()
    p.add(10.0, 0.5)
    p.add(10.3, 0.5)  # arrives while the first half second plays: queued, runs out at 11.0
    assert p.stall == 0 and p.end == 11.0
    p.add(11.25, 0.2)  # 250 ms of silence before it
    p.add(11.3, 0.1)
    assert abs(p.stall - 0.25) < 1e-9 and abs(p.end - 11.55) < 1e-9
    assert p.dry_after == 1.0 and abs(p.received - 1.3) < 1e-9  # it ran dry after its first second of audio
    steady = Player()
    steady.add(0.0, 1.0)
    steady.add(0.5, 1.0)
    assert steady.dry_after is None and steady.stall == 0
