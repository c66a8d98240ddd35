"""The cluster report: one self-contained HTML file (no network requests) to browse the clusters.

Data layout inside the page (built by :func:`report_data`, one JSON block):

* ``vocab``: the tokens the page needs, once each — their raw bytes concatenated (base64) with
  uint32 offsets, and their real token ids; the rest of the page refers to tokens by their
  position in this list (local id).
* ``windows``: local ids (base64, little-endian uint16 or uint32) of every context range, stored
  once: the windows ``[pos − before, pos + after]`` of samples of the same document are merged
  where they overlap, so shared context is stored once.
* ``samples``: columns, grouped by cluster — window start / target / end as offsets into
  ``windows``, document, position, canonical index, loss (nats).
* ``clusters``: per cluster rank — size, mean and median loss, its predicted (target) tokens with
  counts, optional extras (learned-at step) from a later stage.

The page decodes each window's bytes with one streaming ``TextDecoder``, so a character split
across tokens comes out whole; text is inserted with ``textContent`` only. The JSON is escaped so
that nothing inside it can end the ``<script>`` block, and a Content-Security-Policy allows only
the page's own script (by hash) and no network access at all.
"""

from __future__ import annotations

import base64
import datetime as _dt
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from .canonical import CanonicalCorpus
from .charts import rank_frequency_svg
from .html import render, script_hash, script_json, svg_markup, template_source, trusted_html

BEFORE = 300  # tokens of context before the target (the original's --before)
AFTER = 0  # tokens after the target (the original's --after)
SAMPLE_COLUMNS = ("cluster", "index", "document", "position", "token_id", "loss")

def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")


def _check_samples(samples: pd.DataFrame, corpus: CanonicalCorpus) -> pd.DataFrame:
    missing = [c for c in SAMPLE_COLUMNS if c not in samples.columns]
    if missing:
        raise ValueError(f"samples table lacks columns {missing}; needs {list(SAMPLE_COLUMNS)}")
    if len(samples) == 0:
        raise ValueError("no samples to report")
    s = samples[list(SAMPLE_COLUMNS)].reset_index(drop=True)
    ranks = np.unique(s["cluster"].to_numpy())
    if ranks[0] != 0 or ranks[-1] != len(ranks) - 1:
        raise ValueError(f"cluster ranks must be 0…K−1 with every rank used, got {len(ranks)} ranks "
                         f"from {ranks[0]} to {ranks[-1]}")
    doc, pos = s["document"].to_numpy(np.int64), s["position"].to_numpy(np.int64)
    if doc.min() < 0 or doc.max() >= corpus.num_documents:
        raise ValueError(f"sample documents outside the corpus (it has {corpus.num_documents} documents)")
    lengths = corpus.num_tokens[doc]
    if np.any(pos < 1) or np.any(pos >= lengths):
        bad = int(np.flatnonzero((pos < 1) | (pos >= lengths))[0])
        raise ValueError(f"sample {bad}: position {pos[bad]} is not a predictable token of document "
                         f"{doc[bad]} ({lengths[bad]} tokens)")
    actual = corpus.ids[corpus.offsets[doc] + pos]
    wrong = np.flatnonzero(actual != s["token_id"].to_numpy())
    if len(wrong):
        i = int(wrong[0])
        raise ValueError(f"sample {i}: token_id {s['token_id'][i]} but the corpus has {actual[i]} at document "
                         f"{doc[i]}, position {pos[i]}: clusters and corpus do not belong together")
    if not np.all(np.isfinite(s["loss"].to_numpy(np.float64))):
        raise ValueError("samples table has non-finite losses")
    return s


def context_windows(doc: np.ndarray, pos: np.ndarray, doc_lengths: np.ndarray, before: int, after: int):
    """Merge the context windows ``[pos − before, pos + after]`` (clipped to each document) of
    samples into non-overlapping ranges per document.

    Returns ``(ranges, start, end)``: ranges int64 ``[R, 3]`` (document, first token, end token
    exclusive) and, per sample, the window's ``start``/``end`` (exclusive) as offsets into the
    concatenation of the ranges (int64 ``[N]``); the target sits at ``start + (pos − lo)``.
    """
    doc, pos = np.asarray(doc, np.int64), np.asarray(pos, np.int64)
    lo = np.maximum(pos - before, 0)
    hi = np.minimum(pos + after + 1, np.asarray(doc_lengths, np.int64)[doc])
    order = np.lexsort((lo, doc))
    d, w, h = doc[order], lo[order], hi[order]  # sorted by (document, window start)
    big = int(h.max()) + 1
    reach = np.maximum.accumulate(d * big + h) - d * big  # furthest end so far within the document
    new = np.ones(len(d), dtype=bool)
    new[1:] = (d[1:] != d[:-1]) | (w[1:] > reach[:-1])
    range_id = np.cumsum(new) - 1
    r_doc, r_lo = d[new], w[new]
    r_hi = np.maximum.reduceat(h, np.flatnonzero(new))
    base = np.concatenate([[0], np.cumsum(r_hi - r_lo)])
    start, end = np.empty_like(lo), np.empty_like(hi)
    start[order] = base[range_id] + (w - r_lo[range_id])
    end[order] = base[range_id] + (h - r_lo[range_id])
    return np.stack([r_doc, r_lo, r_hi], axis=1), start, end


def _vocabulary(window_ids: np.ndarray, token_bytes: Sequence[bytes]) -> tuple[dict, np.ndarray, dict[int, int]]:
    """The page's ``vocab`` block for the token ids of the windows (int64 ``[W]``), the windows as
    local ids (int64 ``[W]``, positions in the vocabulary), and token id → local id."""
    if window_ids.max() >= len(token_bytes):
        raise ValueError(f"token id {window_ids.max()} is outside the tokenizer's {len(token_bytes)} tokens")
    vocab_ids, local = np.unique(window_ids, return_inverse=True)
    vocab_bytes = [bytes(token_bytes[i]) for i in vocab_ids]
    vocab_offsets = np.concatenate([[0], np.cumsum([len(b) for b in vocab_bytes])]).astype("<u4")
    vocab = {
        "ids": vocab_ids.tolist(),
        "bytes": base64.b64encode(b"".join(vocab_bytes)).decode("ascii"),
        "offsets": _b64(vocab_offsets),
    }
    return vocab, local, dict(zip(vocab_ids.tolist(), range(len(vocab_ids))))


def _cluster_entries(
    s: pd.DataFrame, local_of: Mapping[int, int], cluster_extras: Mapping[int, Mapping] | None
) -> list[dict]:
    """The page's ``clusters`` block: per rank its size, first sample, mean and median loss (nats,
    6 decimals), predicted tokens ``[local id, count]`` by count, and the extras (learned-at)."""
    cluster = s["cluster"].to_numpy(np.int64)
    loss = s["loss"].to_numpy(np.float64)
    token_id = s["token_id"].to_numpy(np.int64)
    first = np.searchsorted(cluster, np.arange(cluster.max() + 1))
    stops = np.append(first[1:], len(cluster))
    clusters = []
    for rank, (a, b) in enumerate(zip(first.tolist(), stops.tolist())):
        ids, counts = np.unique(token_id[a:b], return_counts=True)
        by_count = np.lexsort((ids, -counts))
        entry = {
            "size": b - a,
            "first": a,
            "mean": round(float(loss[a:b].mean()), 6),
            "median": round(float(np.median(loss[a:b])), 6),
            "tokens": [[local_of[int(ids[i])], int(counts[i])] for i in by_count],
        }
        extra = (cluster_extras or {}).get(rank)
        if extra:
            entry["learnedAt"] = extra.get("learned_at")
            entry["learnedAtStep"] = extra.get("learned_at_step")
            entry["hasSparkline"] = bool(extra.get("sparkline_svg"))
            if extra.get("learned_together"):
                entry["learnedTogether"] = str(extra["learned_together"])
        clusters.append(entry)
    return clusters


def report_data(
    samples: pd.DataFrame,
    corpus: CanonicalCorpus,
    token_bytes: Sequence[bytes],
    before: int = BEFORE,
    after: int = AFTER,
    cluster_extras: Mapping[int, Mapping] | None = None,
) -> dict:
    """The JSON-able data the page needs (see the module docstring). ``samples``: one row per
    sample with columns :data:`SAMPLE_COLUMNS` (cluster = rank, 0 = largest; loss in nats)."""
    if before < 0 or after < 0:
        raise ValueError(f"before and after must be ≥ 0, got {before}, {after}")
    s = _check_samples(samples, corpus)
    s = s.sort_values("cluster", kind="stable").reset_index(drop=True)  # keep sample order per cluster
    doc, pos = s["document"].to_numpy(np.int64), s["position"].to_numpy(np.int64)

    ranges, start, end = context_windows(doc, pos, corpus.num_tokens, before, after)
    target = start + (pos - np.maximum(pos - before, 0))
    window_ids = np.concatenate(
        [corpus.ids[corpus.offsets[d] + a : corpus.offsets[d] + b] for d, a, b in ranges]
    ).astype(np.int64)
    vocab, local, local_of = _vocabulary(window_ids, token_bytes)
    bits = 16 if len(vocab["ids"]) <= 65536 else 32
    clusters = _cluster_entries(s, local_of, cluster_extras)
    return {
        "vocab": vocab,
        "windows": _b64(local.astype("<u2" if bits == 16 else "<u4")),
        "windowsBits": bits,
        "samples": {
            "start": start.tolist(),
            "target": target.tolist(),
            "end": end.tolist(),
            "doc": doc.tolist(),
            "pos": pos.tolist(),
            "index": s["index"].to_numpy(np.int64).tolist(),
            "loss": [round(x, 6) for x in s["loss"].to_numpy(np.float64).tolist()],
        },
        "clusters": clusters,
        "numSamples": len(s),
        "before": before,
        "after": after,
        "hasLearnedAt": any("learnedAtStep" in c for c in clusters),
    }


def _sparklines(cluster_extras: Mapping[int, Mapping] | None) -> dict:
    """Rank → the cluster's sparkline as template markup (checked to be a plain ``<svg>``)."""
    sparklines = {}
    for rank, extra in (cluster_extras or {}).items():
        svg = (extra or {}).get("sparkline_svg")
        if svg:
            sparklines[int(rank)] = svg_markup(svg, f"cluster {rank}: sparkline_svg")
    return sparklines


def render_report(
    samples: pd.DataFrame,
    corpus: CanonicalCorpus,
    token_bytes: Sequence[bytes],
    *,
    before: int = BEFORE,
    after: int = AFTER,
    title: str = "Quanta clusters",
    details: Mapping[str, object] | None = None,
    cluster_extras: Mapping[int, Mapping] | None = None,
    extra_sections_html: Sequence[str] | str | None = None,
) -> str:
    """Render the report as one self-contained HTML page (a ``str``; UTF-8 when written).

    ``samples``: one row per clustered token with columns :data:`SAMPLE_COLUMNS` — ``cluster``
    (rank, 0 = largest), ``index`` (canonical), ``document``, ``position`` (of the target),
    ``token_id`` (the target, checked against ``corpus``), ``loss`` (nats).
    ``token_bytes``: raw bytes of every token id (:func:`quanta_core.token_bytes.token_bytes_table`).
    ``before``/``after``: tokens of context shown before/after each target.
    ``details``: facts shown in the page's "about" table (model, step, settings…; escaped).
    ``cluster_extras``: optional ``{rank: {"learned_at": str | None, "learned_at_step": int | None,
    "sparkline_svg": str, "learned_together": str}}`` (:func:`quanta_core.dynamics_page.report_extras`;
    ``learned_together`` optional, a sentence shown as text); ``sparkline_svg`` must be a plain
    ``<svg>`` drawn by our own code (it is inserted as markup); when any ``learned_at_step`` is given
    the page offers "sort by learned-at".
    ``extra_sections_html``: trusted HTML fragments (our own code; one string or a list) shown as
    model-level sections; the page's Content-Security-Policy blocks scripts in them.
    """
    data = report_data(samples, corpus, token_bytes, before, after, cluster_extras)
    sizes = [c["size"] for c in data["clusters"]]
    sparklines = _sparklines(cluster_extras)
    sections = [extra_sections_html] if isinstance(extra_sections_html, str) else list(extra_sections_html or [])
    script = template_source("report.js.j2")  # plain JavaScript, not a template
    return render(
        "report.html.j2",
        title=title,
        data_json=script_json(data),
        script=trusted_html(script),  # our own JavaScript file, allowed by its hash in the CSP
        script_hash=script_hash(script),
        rank_frequency_svg=svg_markup(rank_frequency_svg(sizes)),
        details=[(str(k), str(v)) for k, v in (details or {}).items()],
        num_clusters=len(sizes),
        num_samples=data["numSamples"],
        before=before,
        after=after,
        generated=_dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        sparklines=sparklines,
        extra_sections=[trusted_html(fragment) for fragment in sections if fragment],
    )
