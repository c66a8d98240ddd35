"""The report's view of which clusters are real: each cluster's stability band and coherence z
(for its card, sort and filter) and an overview section with the sweep's envelope and slope."""

from __future__ import annotations

import pandas as pd

from quanta_core.report.charts import envelope_svg
from quanta_core.report.html import render, svg_markup


def stability_extras(clusters: pd.DataFrame) -> dict[int, dict]:
    """Cluster rank → ``{"stability", "band", "coherence_z"}`` from a ``quanta_cluster_stability``
    table (columns ``cluster``, ``stability``, ``band``, ``coherence_z``)."""
    return {int(r.cluster): {"stability": float(r.stability), "band": str(r.band), "coherence_z": float(r.coherence_z)}
            for r in clusters.itertuples(index=False)}


def stability_section_html(summary: dict | None, sweep: dict | None = None, envelope=None) -> str:
    """An HTML fragment for the report's overview: how many clusters are stable under re-clustering
    (``summary`` of ``quanta_cluster_stability``) and the rank-frequency envelope of the sweep
    (``sweep`` summary and ``envelope`` sizes by rank), numbers only."""
    chart = None
    if sweep is not None and envelope is not None:
        chart = svg_markup(envelope_svg(list(envelope), sweep["envelope_slope"], tuple(sweep["slope_ranks"]),
                                        tuple(sweep["slope_interval"]), sweep.get("paper_envelope_slope")),
                           "the rank-frequency envelope")
    return render("stability_section.html.j2", summary=summary, sweep=sweep, chart=chart)
