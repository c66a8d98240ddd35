"""Token selection (quanta_core.corpus.selection) against a naive loop."""

import math

import numpy as np
import pytest

from quanta_core.corpus.selection import TooFewTokensError, select_tokens
from quanta_core.presets import PAPER_THRESHOLD_BITS


def naive_select(losses, flags, threshold_bits, skip, num_tokens):
    threshold = np.float32(threshold_bits * math.log(2))
    qualified = [g for g in range(len(losses)) if losses[g] < threshold and not (flags is not None and flags[g])]
    return qualified[::skip][:num_tokens]


@pytest.mark.parametrize("skip", [1, 3, 50])
@pytest.mark.parametrize("use_flags", [False, True])
def test_matches_naive_loop(skip, use_flags):
    rng = np.random.default_rng(skip)
    losses = rng.exponential(0.5, 20_000).astype(np.float32)
    losses[::97] = np.nan
    flags = rng.random(20_500) < 0.3 if use_flags else None  # longer than the losses: sliced
    expected = naive_select(losses, flags, 1.0, skip, 40)
    got = select_tokens(losses, flags, threshold_bits=1.0, skip=skip, num_tokens=40)
    assert got.dtype == np.int64
    assert got.tolist() == expected
    assert np.all(losses[got] < np.float32(math.log(2)))
    if flags is not None:
        assert not flags[got].any()


def test_threshold_is_strict_and_in_bits():
    nats = np.float32(PAPER_THRESHOLD_BITS * math.log(2))  # 0.1 nats
    losses = np.array([nats, np.nextafter(nats, np.float32(0)), 0.0, 0.2, 0.05], dtype=np.float32)
    got = select_tokens(losses, None, threshold_bits=PAPER_THRESHOLD_BITS, skip=1, num_tokens=3)
    assert got.tolist() == [1, 2, 4]


def test_too_few_tokens_says_how_many():
    losses = np.array([0.01, 0.5, 0.02, 0.03, 0.04], dtype=np.float32)
    flags = np.array([False, False, True, False, False])
    with pytest.raises(TooFewTokensError) as info:
        select_tokens(losses, flags, threshold_bits=0.5, skip=2, num_tokens=3, filter_name="present_trigram")
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert "only 2 tokens" in message and "3 were asked" in message and "present_trigram" in message
    assert "Raise the threshold" in message


def test_bad_arguments():
    losses = np.zeros(10, dtype=np.float32)
    with pytest.raises(ValueError, match="skip"):
        select_tokens(losses, None, threshold_bits=1, skip=0, num_tokens=1)
    with pytest.raises(ValueError, match="filter covers"):
        select_tokens(losses, np.zeros(5, bool), threshold_bits=1, skip=1, num_tokens=1)
    with pytest.raises(ValueError, match="bool"):
        select_tokens(losses, np.zeros(10, np.int8), threshold_bits=1, skip=1, num_tokens=1)
