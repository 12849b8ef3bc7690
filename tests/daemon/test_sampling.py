"""The sampling policy, rule by rule: which frames `device run --collect` keeps, and the caps."""
from __future__ import annotations

import random

import numpy as np
import pytest

from device.daemon.sampling import DEFAULT_BAND, Caps, Sampler, SamplingError, policy_from, reasons

LABELS = ("daisy", "dandelion", "roses", "sunflowers", "tulips")


def scores(**given: float) -> np.ndarray:
    return np.array([given.get(label, 0.0) for label in LABELS], dtype=np.float32)


def test_with_no_rule_the_default_band_keeps_unsure_frames():
    policy = policy_from()
    assert policy.band == DEFAULT_BAND
    assert reasons(policy, scores(daisy=0.55, roses=0.45), LABELS, "daisy", 0.5) == ["uncertain"]
    assert reasons(policy, scores(daisy=0.95, roses=0.05), LABELS, "daisy", 0.5) == []


def test_uncertain_band_is_inclusive_at_both_ends():
    policy = policy_from("0.3:0.7")
    assert reasons(policy, scores(tulips=0.3, roses=0.29), LABELS, "tulips", 0.5) == ["uncertain"]
    assert reasons(policy, scores(tulips=0.7, roses=0.3), LABELS, "tulips", 0.5) == ["uncertain"]
    assert reasons(policy, scores(tulips=0.71, roses=0.29), LABELS, "tulips", 0.5) == []
    assert reasons(policy, scores(tulips=0.25, roses=0.2), LABELS, "tulips", 0.5) == []


def test_margin_keeps_frames_whose_two_best_are_close():
    policy = policy_from(margin=0.1)
    assert policy.band is None, "a rule given: the default band no longer applies"
    assert reasons(policy, scores(roses=0.48, tulips=0.42), LABELS, "roses", 0.5) == ["margin"]
    assert reasons(policy, scores(roses=0.58, tulips=0.42), LABELS, "roses", 0.5) == []


def test_on_change_keeps_the_first_frame_of_a_new_top_label():
    policy = policy_from(on_change=True)
    assert reasons(policy, scores(daisy=0.9), LABELS, None, 0.5) == ["change"], "the first frame is a change"
    assert reasons(policy, scores(daisy=0.9), LABELS, "daisy", 0.5) == []
    assert reasons(policy, scores(roses=0.9), LABELS, "daisy", 0.5) == ["change"]


def test_random_keeps_the_given_share_of_frames():
    policy = policy_from(random_rate=0.2)
    assert reasons(policy, scores(daisy=0.99), LABELS, "daisy", 0.19) == ["random"]
    assert reasons(policy, scores(daisy=0.99), LABELS, "daisy", 0.2) == []
    sampler = Sampler(policy, random.Random(7))
    kept = sum(bool(sampler.consider(scores(daisy=0.99), LABELS, float(i))[0]) for i in range(5000))
    assert 900 < kept < 1100


def test_labels_narrow_the_rules_and_alone_keep_every_frame_of_those_labels():
    narrowed = policy_from("0:0.6", labels="roses,tulips")
    assert reasons(narrowed, scores(roses=0.5, daisy=0.4), LABELS, "roses", 0.5) == ["uncertain"]
    assert reasons(narrowed, scores(daisy=0.5, roses=0.4), LABELS, "daisy", 0.5) == [], "daisy is not asked for"
    alone = policy_from(labels=["tulips"])
    assert reasons(alone, scores(tulips=0.99), LABELS, "tulips", 0.5) == ["label"]
    assert reasons(alone, scores(daisy=0.99), LABELS, "daisy", 0.5) == []


def test_every_rule_that_fires_is_a_reason_in_a_fixed_order():
    policy = policy_from("0:0.6", margin=0.2, random_rate=1.0, on_change=True)
    assert reasons(policy, scores(roses=0.5, tulips=0.4), LABELS, "daisy", 0.0) == [
        "change", "uncertain", "margin", "random"]


def test_caps_per_minute_hour_and_day_slide():
    caps = Caps([(2, 60.0), (3, 3600.0), (None, 86400.0)])
    assert caps.full(0.0) is None
    caps.take(0.0)
    caps.take(10.0)
    assert caps.full(20.0) == "cap_per_minute"
    assert caps.full(60.0) is None, "the first one left the minute"
    caps.take(60.0)
    assert caps.full(200.0) == "cap_per_hour"
    assert caps.full(3600.0) is None


def test_a_frame_dropped_for_lack_of_room_does_not_count_toward_the_caps():
    sampler = Sampler(policy_from(margin=1.0, max_per=(1, None, None)))
    fired, cap = sampler.consider(scores(daisy=0.5), LABELS, 0.0)
    assert fired == ["margin"] and cap is None
    assert sampler.consider(scores(daisy=0.5), LABELS, 1.0)[1] is None, "nothing was taken yet"
    sampler.taken(1.0)
    assert sampler.consider(scores(daisy=0.5), LABELS, 2.0)[1] == "cap_per_minute"
    assert sampler.consider(scores(daisy=0.5), LABELS, 61.0)[1] is None


@pytest.mark.parametrize("options, message", [
    ({"uncertain": "0.9:0.2"}, r"--collect-uncertain 0.9:0.2: need 0 <= LO < HI <= 1"),
    ({"uncertain": "0.5"}, r"expected LO:HI"),
    ({"uncertain": "a:b"}, r"expected LO:HI"),
    ({"uncertain": "0.2:1.5"}, r"need 0 <= LO < HI <= 1"),
    ({"margin": 0.0}, r"--collect-margin 0.0: must be in \(0, 1\]"),
    ({"random_rate": 1.5}, r"--collect-random 1.5"),
    ({"max_per": (None, -1, None)}, r"--collect-max-per-hour -1: must not be negative"),
])
def test_bad_policy_options_are_one_line_errors(options, message):
    with pytest.raises(SamplingError, match=message) as error:
        policy_from(**options)
    assert "\n" not in str(error.value)
