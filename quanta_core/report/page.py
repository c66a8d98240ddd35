"""The cluster report: one self-contained HTML file (no network requests) to browse the clusters.

The page carries two JSON blocks:

* ``quanta-data`` (:func:`report_data` ``["data"]``), about every sample:

  * ``vocab``: the tokens of every sample's context, once each — their raw bytes concatenated
    (base64) with uint32 offsets, and their real token ids; the rest of the page refers to tokens
    by their position in this list (local id);
  * ``clusters``: per cluster rank — size, mean and median loss (nats), its predicted (target)
    tokens with counts, optional extras (learned-at step) from a later stage.

* ``quanta-page`` (``["page"]``), the samples the page holds — every sample, or per cluster at
  most ``cap`` of them (chosen at random, seeded) so that the file stays under a size budget
  (:func:`page_rows`, :func:`report_page`); the complete table is :func:`quanta_core.report.table.samples_table`:

  * ``windows``: local ids (base64, little-endian uint16 or uint32) of every context range,
    stored once: the windows ``[pos − before, pos + after]`` of samples of the same document are
    merged where they overlap; the page decodes only the part of the base64 text a drawn sample
    needs;
  * columns of the page's samples, grouped by cluster — window start / target / end as offsets
    into ``windows``, document, position, canonical index, loss (nats) — and per cluster the
    number ``shown`` in the page.

The page decodes each window's bytes with one streaming ``TextDecoder``, so a character split
across tokens comes out whole; text is inserted with ``textContent`` only. The JSON is escaped so
that nothing inside it can end the ``<script>`` block, and a Content-Security-Policy allows only
the page's own script (by hash) and no network access at all.
"""

from __future__ import annotations

import base64
import datetime as _dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from quanta_core.corpus.canonical import CanonicalCorpus
from quanta_core.presets import CONTEXT_AFTER as AFTER
from quanta_core.presets import CONTEXT_BEFORE as BEFORE
from quanta_core.presets import MAX_PAGE_BYTES
from quanta_core.report.charts import rank_frequency_svg
from quanta_core.report.html import (
    json_for_script,
    render,
    script_hash,
    script_json,
    svg_markup,
    template_source,
    trusted_html,
)
from quanta_core.report.samples import check_samples, context_windows, window_ids

PAGE_SEED = 0  # seed of the choice of samples of a capped cluster


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")


def _b64_length(num_bytes: int) -> int:
    return 4 * ((num_bytes + 2) // 3)


def page_rows(cluster: np.ndarray, cap: int | None, seed: int = PAGE_SEED) -> np.ndarray:
    """The rows (int64 ``[M]``, ascending) of a table sorted by ``cluster`` (int ``[N]``) that the
    page holds: every row when ``cap`` is ``None``, else per cluster ``min(size, cap)`` rows drawn
    at random (``seed``). Nested: the rows for ``cap`` are among those for ``cap + 1``."""
    cluster = np.asarray(cluster)
    if cap is None:
        return np.arange(len(cluster), dtype=np.int64)
    if cap < 1:
        raise ValueError(f"samples per cluster in the page must be ≥ 1, got {cap}")
    priority = np.random.default_rng(seed).random(len(cluster))
    order = np.lexsort((priority, cluster))  # by cluster, then by priority
    rank = np.arange(len(cluster)) - np.searchsorted(cluster, cluster[order])  # rank within its cluster
    return np.sort(order[rank < cap]).astype(np.int64)


def _vocabulary(corpus: CanonicalCorpus, ranges: np.ndarray, token_bytes: Sequence[bytes]) -> tuple[dict, np.ndarray]:
    """The page's ``vocab`` block for the tokens of ``ranges`` (every sample's context), and token
    id → local id (int64 ``[V]``, −1 for tokens not in the vocabulary)."""
    present = np.zeros(len(token_bytes), dtype=bool)
    for ids in window_ids(corpus, ranges):
        if ids.max() >= len(token_bytes):
            raise ValueError(f"token id {ids.max()} is outside the tokenizer's {len(token_bytes)} tokens")
        present[ids] = True
    vocab_ids = np.flatnonzero(present)
    vocab_bytes = [bytes(token_bytes[i]) for i in vocab_ids]
    vocab_offsets = np.concatenate([[0], np.cumsum([len(b) for b in vocab_bytes])]).astype("<u4")
    vocab = {
        "ids": vocab_ids.tolist(),
        "bytes": base64.b64encode(b"".join(vocab_bytes)).decode("ascii"),
        "offsets": _b64(vocab_offsets),
    }
    local_of = np.full(len(token_bytes), -1, dtype=np.int64)
    local_of[vocab_ids] = np.arange(len(vocab_ids))
    return vocab, local_of


def _cluster_entries(s: pd.DataFrame, local_of: np.ndarray, cluster_extras: Mapping[int, Mapping] | None) -> list[dict]:
    """The page's ``clusters`` block: per rank its size, mean and median loss (nats, 6 decimals),
    predicted tokens ``[local id, count]`` by count, and the extras (learned-at) — of every sample."""
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
            "mean": round(float(loss[a:b].mean()), 6),
            "median": round(float(np.median(loss[a:b])), 6),
            "tokens": [[int(local_of[ids[i]]), int(counts[i])] for i in by_count],
        }
        extra = (cluster_extras or {}).get(rank) or {}
        if "stability" in extra:  # quanta_cluster_stability: clusterboot stability, band, coherence z
            entry["stability"] = round(float(extra["stability"]), 3)
            entry["band"] = str(extra["band"])
            entry["coherenceZ"] = round(float(extra["coherence_z"]), 1)
        if "learned_at" in extra:
            entry["learnedAt"] = extra.get("learned_at")
            entry["learnedAtStep"] = extra.get("learned_at_step")
            entry["hasSparkline"] = bool(extra.get("sparkline_svg"))
            if extra.get("learned_at_rule"):
                entry["learnedAtRule"] = str(extra["learned_at_rule"])
            if extra.get("learned_together"):
                entry["learnedTogether"] = str(extra["learned_together"])
        clusters.append(entry)
    return clusters


@dataclass(frozen=True)
class _Samples:
    """Every sample, sorted by cluster (stable), with what the page needs of them all."""

    s: pd.DataFrame  # samples.SAMPLE_COLUMNS, sorted by cluster
    rows: np.ndarray  # int64 [N]: row of the given table of each row of ``s``
    data: dict  # the ``quanta-data`` block
    local_of: np.ndarray  # int64 [V]: token id → local id
    before: int
    after: int


def _prepare(samples, corpus, token_bytes, before, after, cluster_extras, table_file) -> _Samples:
    if before < 0 or after < 0:
        raise ValueError(f"before and after must be ≥ 0, got {before}, {after}")
    checked = check_samples(samples, corpus)
    rows = np.argsort(checked["cluster"].to_numpy(), kind="stable")  # keep sample order per cluster
    s = checked.iloc[rows].reset_index(drop=True)
    ranges, _, _ = context_windows(s["document"].to_numpy(), s["position"].to_numpy(), corpus.num_tokens, before, after)
    vocab, local_of = _vocabulary(corpus, ranges, token_bytes)
    clusters = _cluster_entries(s, local_of, cluster_extras)
    data = {
        "vocab": vocab,
        "clusters": clusters,
        "numSamples": len(s),
        "before": before,
        "after": after,
        "hasLearnedAt": any("learnedAtStep" in c for c in clusters),
        "hasStability": any("stability" in c for c in clusters),
        "table": table_file,
    }
    return _Samples(s, rows.astype(np.int64), data, local_of, before, after)


def _page_block(p: _Samples, corpus: CanonicalCorpus, rows: np.ndarray, cap: int | None,
                encode: bool = True) -> tuple[dict, int]:
    """The ``quanta-page`` block for ``rows`` of ``p.s`` (ascending), and the length of its
    ``windows`` text; with ``encode=False`` the block's ``windows`` is left empty (for sizing)."""
    page = p.s.iloc[rows]
    doc, pos = page["document"].to_numpy(np.int64), page["position"].to_numpy(np.int64)
    ranges, start, end = context_windows(doc, pos, corpus.num_tokens, p.before, p.after)
    bits = 16 if len(p.data["vocab"]["ids"]) <= 65536 else 32
    num_tokens = int((ranges[:, 2] - ranges[:, 1]).sum())
    windows = ""
    if encode:
        local = np.concatenate([p.local_of[ids] for ids in window_ids(corpus, ranges)])
        windows = _b64(local.astype(f"<u{bits // 8}"))
    block = {
        "windows": windows,
        "windowsBits": bits,
        "start": start.tolist(),
        "target": (start + np.minimum(pos, p.before)).tolist(),
        "end": end.tolist(),
        "doc": doc.tolist(),
        "pos": pos.tolist(),
        "index": page["index"].to_numpy(np.int64).tolist(),
        "loss": [round(x, 6) for x in page["loss"].to_numpy(np.float64).tolist()],
        "shown": np.bincount(page["cluster"].to_numpy(np.int64), minlength=len(p.data["clusters"])).tolist(),
        "cap": cap,
        "numShown": len(page),
    }
    return block, _b64_length(num_tokens * bits // 8)


def report_data(
    samples: pd.DataFrame,
    corpus: CanonicalCorpus,
    token_bytes: Sequence[bytes],
    before: int = BEFORE,
    after: int = AFTER,
    cluster_extras: Mapping[int, Mapping] | None = None,
    max_per_cluster: int | None = None,
    table_file: str | None = None,
) -> dict:
    """The JSON-able blocks of the page, ``{"data": …, "page": …}`` (see the module docstring),
    with at most ``max_per_cluster`` samples per cluster in the page (``None``: all).
    ``samples``: one row per sample with columns :data:`~quanta_core.report.samples.SAMPLE_COLUMNS` (cluster = rank,
    0 = largest; loss in nats). ``table_file``: name of the complete table next to the page."""
    p = _prepare(samples, corpus, token_bytes, before, after, cluster_extras, table_file)
    rows = page_rows(p.s["cluster"].to_numpy(), max_per_cluster)
    return {"data": p.data, "page": _page_block(p, corpus, rows, max_per_cluster)[0]}


@dataclass(frozen=True)
class ReportPage:
    """A rendered report. ``html``: the page; ``in_page``: bool ``[N]``, per row of the samples
    table given, whether the page holds that sample; ``cap``: samples per cluster in the page
    (``None``: every sample); ``size_bytes``: the page's UTF-8 size."""

    html: str
    in_page: np.ndarray
    cap: int | None
    size_bytes: int


def _fitting_cap(p: _Samples, corpus: CanonicalCorpus, fixed_bytes: int, max_bytes: int | None,
                 max_per_cluster: int | None) -> int | None:
    """The largest cap (≤ ``max_per_cluster``) whose page fits in ``max_bytes``, by bisection (the
    size grows with the cap: page rows are nested); ``None`` when every sample fits; 1 when not
    even one sample per cluster fits."""
    cluster = p.s["cluster"].to_numpy()
    largest = max(c["size"] for c in p.data["clusters"])

    def size(cap: int | None) -> int:
        block, windows_length = _page_block(p, corpus, page_rows(cluster, cap), cap, encode=False)
        return fixed_bytes + len(json_for_script(block)) + windows_length

    top = None if max_per_cluster is None or max_per_cluster >= largest else max_per_cluster
    if max_bytes is None or size(top) <= max_bytes:
        return top
    low, high = 1, largest if top is None else top  # size(high) > max_bytes
    if size(low) > max_bytes:
        return low
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if size(mid) <= max_bytes else (low, mid)
    return low


def _sparklines(cluster_extras: Mapping[int, Mapping] | None) -> dict:
    """Rank → the cluster's sparkline as template markup (checked to be a plain ``<svg>``)."""
    sparklines = {}
    for rank, extra in (cluster_extras or {}).items():
        svg = (extra or {}).get("sparkline_svg")
        if svg:
            sparklines[int(rank)] = svg_markup(svg, f"cluster {rank}: sparkline_svg")
    return sparklines


def report_page(
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
    max_bytes: int | None = MAX_PAGE_BYTES,
    max_per_cluster: int | None = None,
    table_file: str | None = None,
) -> ReportPage:
    """Render the report as one self-contained HTML page (a :class:`ReportPage`; UTF-8 when written).

    ``samples``: one row per clustered token with columns
    :data:`~quanta_core.report.samples.SAMPLE_COLUMNS` — ``cluster`` (rank, 0 = largest), ``index``
    (canonical), ``document``, ``position`` (of the target), ``token_id`` (the target, checked
    against ``corpus``), ``loss`` (nats).
    ``token_bytes``: raw bytes of every token id (:func:`quanta_core.report.token_text.token_bytes_table`).
    ``before``/``after``: tokens of context shown before/after each target.
    ``max_bytes``: size budget of the page (``None``: none) and ``max_per_cluster``: samples per
    cluster (``None``: no limit) — the page holds every sample when it can, else the same number
    of samples of every larger cluster, the most that fits (:func:`page_rows`); cluster sizes,
    losses, predicted tokens and search always cover every sample. ``table_file``: the name of the
    complete table next to the page (:func:`quanta_core.report.table.samples_table`), which the
    page names where a cluster has more samples than it holds.
    ``details``: facts shown in the page's "about" table (model, step, settings…; escaped).
    ``cluster_extras``: optional ``{rank: {"learned_at": str | None, "learned_at_step": int | None,
    "sparkline_svg": str, "learned_at_rule": str, "learned_together": str}}``
    (:func:`quanta_core.report.dynamics_page.report_extras`; ``learned_at_rule`` and ``learned_together``
    optional, sentences shown as text); ``sparkline_svg`` must be a plain ``<svg>`` drawn by our own
    code (it is inserted as markup); when any ``learned_at_step`` is given the page offers "sort by
    learned-at".
    ``extra_sections_html``: trusted HTML fragments (our own code; one string or a list) shown as
    model-level sections; the page's Content-Security-Policy blocks scripts in them.
    """
    if max_bytes is not None and max_bytes <= 0:
        raise ValueError(f"the page's size budget must be > 0 bytes (or None), got {max_bytes}")
    p = _prepare(samples, corpus, token_bytes, before, after, cluster_extras, table_file)
    sizes = [c["size"] for c in p.data["clusters"]]
    sections = [extra_sections_html] if isinstance(extra_sections_html, str) else list(extra_sections_html or [])
    script = template_source("report.js.j2")  # plain JavaScript, not a template

    def page(block: dict) -> str:
        return render(
            "report.html.j2",
            title=title,
            data_json=script_json(p.data),
            page_json=script_json(block),
            script=trusted_html(script),  # our own JavaScript file, allowed by its hash in the CSP
            script_hash=script_hash(script),
            rank_frequency_svg=svg_markup(rank_frequency_svg(sizes)),
            details=[(str(k), str(v)) for k, v in (details or {}).items()],
            num_clusters=len(sizes),
            num_samples=len(p.s),
            before=before,
            after=after,
            generated=_dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            sparklines=_sparklines(cluster_extras),
            extra_sections=[trusted_html(fragment) for fragment in sections if fragment],
        )

    fixed_bytes = len(page({}).encode("utf-8")) - len("{}")  # the page without its quanta-page block
    cap = _fitting_cap(p, corpus, fixed_bytes, max_bytes, max_per_cluster)
    rows = page_rows(p.s["cluster"].to_numpy(), cap)
    html = page(_page_block(p, corpus, rows, cap)[0])
    in_page = np.zeros(len(p.s), dtype=bool)
    in_page[p.rows[rows]] = True
    return ReportPage(html, in_page, cap, len(html.encode("utf-8")))


def render_report(samples: pd.DataFrame, corpus: CanonicalCorpus, token_bytes: Sequence[bytes], **options) -> str:
    """The page of :func:`report_page` (same arguments) as a ``str``."""
    return report_page(samples, corpus, token_bytes, **options).html
