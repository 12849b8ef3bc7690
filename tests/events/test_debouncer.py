"""The debouncer on scripted frame sequences: what becomes the state, when it clears, and what is reported."""
from __future__ import annotations

from device.daemon.events import UPDATE_EVERY_S, Debounce, Debouncer

FPS = 10.0


def play(debouncer: Debouncer, script: list[tuple[str | None, float]], start: float = 100.0):
    """Feed one (label, score) per frame at 10 fps; returns [(frame index, kind, label)] of the transitions."""
    seen = []
    for index, (label, score) in enumerate(script):
        for transition in debouncer.observe(label, score, start + index / FPS, image=f"frame{index}"):
            seen.append((index, transition.kind, transition.event.label, transition))
    return seen


def kinds(seen):
    return [(index, kind, label) for index, kind, label, _ in seen]


def test_a_label_becomes_the_state_only_after_min_frames_in_a_row():
    debouncer = Debouncer(Debounce(min_frames=3, threshold=0.5, clear_seconds=2.0))
    seen = play(debouncer, [("roses", 0.9), ("roses", 0.9), ("daisy", 0.9), ("roses", 0.8), ("roses", 0.95),
                            ("roses", 0.9)])
    assert kinds(seen) == [(5, "start", "roses")]
    event = seen[0][3].event
    assert event.start == 100.3  # the run that held began at frame 3
    assert event.score == 0.95 and event.best_image == "frame4"  # the best frame of the run is the snapshot
    assert debouncer.state()["label"] == "roses" and debouncer.state()["event"] == event.id


def test_scores_below_the_threshold_never_start_an_event():
    debouncer = Debouncer(Debounce(min_frames=2, threshold=0.6))
    assert play(debouncer, [("roses", 0.59)] * 30) == []
    assert debouncer.state() == {"region": None, "label": None, "score": None, "since": None, "event": None}


def test_a_flickering_label_neither_ends_the_state_nor_starts_another():
    debouncer = Debouncer(Debounce(min_frames=3, clear_seconds=1.0))
    script = [("roses", 0.9)] * 5 + [("daisy", 0.9), ("roses", 0.9), (None, 0.0), ("daisy", 0.8), ("daisy", 0.7),
                                     ("roses", 0.9), ("tulips", 0.3)] * 4
    assert kinds(play(debouncer, script)) == [(2, "start", "roses")]


def test_the_state_clears_once_the_label_was_absent_for_clear_seconds():
    debouncer = Debouncer(Debounce(min_frames=2, clear_seconds=2.0))
    seen = play(debouncer, [("roses", 0.9)] * 4 + [(None, 0.0)] * 25)
    assert kinds(seen) == [(1, "start", "roses"), (23, "end", "roses")]  # last seen at frame 3, +2 s = frame 23
    end = seen[1][3]
    assert end.event.end == 100.3 and end.at == 102.3
    assert end.event.record("end", end.at)["duration_s"] == 0.3
    assert debouncer.state()["label"] is None


def test_another_label_that_holds_ends_the_state_and_starts_its_own():
    debouncer = Debouncer(Debounce(min_frames=3, clear_seconds=5.0))
    seen = play(debouncer, [("roses", 0.9)] * 3 + [("daisy", 0.9)] * 3)
    assert kinds(seen) == [(2, "start", "roses"), (5, "end", "roses"), (5, "start", "daisy")]
    assert seen[0][3].event.id != seen[2][3].event.id


def test_min_seconds_counts_time_instead_of_frames():
    debouncer = Debouncer(Debounce(min_frames=1, min_seconds=1.0))
    assert kinds(play(debouncer, [("roses", 0.9)] * 15)) == [(10, "start", "roses")]


def test_a_better_score_is_reported_as_an_update_at_most_once_a_second():
    debouncer = Debouncer(Debounce(min_frames=1))
    scores = [0.6 + 0.01 * index for index in range(30)]  # rising every frame for 3 s
    seen = play(debouncer, [("roses", score) for score in scores])
    updates = [transition for index, kind, _, transition in seen if kind == "update"]
    reported = [transition for *_, transition in seen]
    assert len(updates) == 2 and all(b.at - a.at >= UPDATE_EVERY_S - 1e-9 for a, b in zip(reported, reported[1:]))
    assert updates[-1].event.score > updates[0].event.score > seen[0][3].event.score
    assert updates[-1].event.best_image == f"frame{round((updates[-1].at - 100.0) * FPS)}"


def test_a_new_model_without_the_label_ends_its_event():
    debouncer = Debouncer(Debounce(min_frames=1))
    play(debouncer, [("roses", 0.9)])
    assert debouncer.forget_labels_except(("roses", "daisy"), 200.0) == []
    assert debouncer.state()["label"] == "roses"
    ended = debouncer.forget_labels_except(("rose", "daisy"), 200.0)
    assert [t.kind for t in ended] == ["end"] and debouncer.state()["label"] is None


def test_event_records_carry_what_a_consumer_needs():
    debouncer = Debouncer(Debounce(min_frames=1), region="left")
    (_, _, _, start), = play(debouncer, [("roses", 0.9)])
    record = start.event.record("start", start.at)
    assert set(record) == {"type", "id", "region", "label", "score", "start", "end", "duration_s", "snapshot", "at"}
    assert record["type"] == "start" and record["region"] == "left" and record["end"] is None
    assert record["start"].endswith("Z")
