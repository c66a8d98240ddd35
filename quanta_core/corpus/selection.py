"""Token selection for QDG: which predictable tokens get a gradient (docs/design.md, from the original).

A canonical index g is selected when its loss is strictly below the threshold and the chosen
induction filter does not flag it; of those, in index order, every ``skip``-th is kept, and the
first ``num_tokens`` of these are the sample. The threshold is given in bits, as the original's
``--loss_threshold`` (0.14426950408889636 bits = 0.1 nats in its README run).
"""

from __future__ import annotations

import math

import numpy as np

FILTERS = ("none", "present_trigram", "present_bigram")


class TooFewTokensError(ValueError):
    """Fewer tokens qualify than were asked for."""


def threshold_nats(threshold_bits: float) -> np.float32:
    """The loss threshold in nats, as the float32 the original compared its float32 losses with
    (``losses < loss_threshold / (1 / ln 2)`` on a float32 torch tensor compares in float32)."""
    return np.float32(threshold_bits / (1 / np.log(2)))


def select_tokens(
    losses: np.ndarray,
    flags: np.ndarray | None,
    *,
    threshold_bits: float,
    skip: int,
    num_tokens: int,
    filter_name: str | None = None,
) -> np.ndarray:
    """Canonical indices of the selected tokens, int64 ``[S]`` with ``S = num_tokens``, ascending.

    ``losses``: float32 ``[G]``, cross-entropy in nats per canonical index (NaN never qualifies).
    ``flags``: bool ``[≥ G]`` (an induction filter over the whole corpus; sliced to ``G``), True =
    excluded; ``None`` = no filter. ``threshold_bits``: strict upper bound on the loss, in bits.
    ``skip``: keep every ``skip``-th qualifying token (1 = all). ``num_tokens``: how many to return.
    ``filter_name`` only labels the error message. Raises :class:`TooFewTokensError` when fewer
    than ``num_tokens`` remain.
    """
    losses = np.asarray(losses)
    if losses.ndim != 1:
        raise ValueError(f"losses must be 1-D [G], got shape {losses.shape}")
    if not math.isfinite(threshold_bits):
        raise ValueError(f"threshold_bits must be finite, got {threshold_bits}")
    if int(skip) != skip or skip < 1:
        raise ValueError(f"skip must be an integer ≥ 1, got {skip}")
    if int(num_tokens) != num_tokens or num_tokens < 1:
        raise ValueError(f"num_tokens must be an integer ≥ 1, got {num_tokens}")
    mask = losses.astype(np.float32, copy=False) < threshold_nats(threshold_bits)
    below = int(mask.sum())
    if flags is not None:
        flags = np.asarray(flags)
        if flags.ndim != 1 or flags.dtype != np.bool_:
            raise ValueError(f"flags must be a 1-D bool array, got {flags.dtype} {flags.shape}")
        if len(flags) < len(losses):
            raise ValueError(f"filter covers {len(flags)} tokens, fewer than the {len(losses)} losses")
        mask &= ~flags[: len(losses)]
    qualified = np.flatnonzero(mask)
    selected = qualified[::skip][:num_tokens].astype(np.int64)
    if len(selected) < num_tokens:
        label = filter_name or ("none" if flags is None else "the given filter")
        raise TooFewTokensError(
            f"only {len(selected)} tokens can be selected, {num_tokens} were asked for: of {len(losses):,} "
            f"tokens, {below:,} have loss < {threshold_bits:g} bits, {len(qualified):,} of them pass filter "
            f"{label!r}, and every {skip}-th of those gives {len(qualified[::skip]):,}. Raise the threshold, "
            f"lower skip (or num_tokens), use a weaker filter, or compute losses on more documents."
        )
    return selected
