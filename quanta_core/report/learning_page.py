"""HTML views of token learning times: the model page's sections (the learning-time spectrum and
its reconstruction error; "are quanta learned at once?"), the report's per-cluster sentence, and
the page of a family's scale curves.

Fragments are rendered by our templates (autoescaped); charts are :mod:`quanta_core.report.charts`
(numbers only). Nothing here reads corpus text.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from quanta_core.learning.clusters import cluster_panel_extras
from quanta_core.learning.fit import FLAG_NAMES
from quanta_core.report import charts
from quanta_core.report.html import render, svg_markup

BASELINE = ("random groups of the same size and reference-step loss distribution: the cluster labels of the "
            "well-fit clustered tokens shuffled within quantile bins of their loss at the reference step")


@dataclass
class LearningTimesView:
    """What the pages need of a stored ``token_learning_times`` directory: ``fits`` (columns
    ``midpoint_x`` float32 and ``flags`` uint8, row g = canonical index g), ``spectrum`` (one row
    per bin), ``spectrum_summary`` and ``summary`` (the fit's, JSON)."""

    fits: pd.DataFrame
    spectrum: pd.DataFrame
    spectrum_summary: dict
    summary: dict

    @classmethod
    def read(cls, directory: str | os.PathLike) -> LearningTimesView:
        """Read ``fits.parquet`` (two columns only), ``spectrum.parquet``, ``spectrum_summary.json``
        and ``summary.json`` of ``directory``; a ``FileNotFoundError`` names a missing file."""
        directory = Path(directory)
        names = ("fits.parquet", "spectrum.parquet", "spectrum_summary.json", "summary.json")
        missing = [n for n in names if not (directory / n).is_file()]
        if missing:
            raise FileNotFoundError(f"token_learning_times at {directory} lacks {', '.join(missing)}")
        return cls(
            fits=pd.read_parquet(directory / names[0], columns=["midpoint_x", "flags"]),
            spectrum=pd.read_parquet(directory / names[1]),
            spectrum_summary=json.loads((directory / names[2]).read_text(encoding="utf-8")),
            summary=json.loads((directory / names[3]).read_text(encoding="utf-8")),
        )


def _pct(value: float) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{100 * value:.1f}"


def _step(value: float) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:,.1f}"


def spectrum_section_html(view: LearningTimesView) -> str:
    """The model page's section on the spectrum: chart, reconstruction error (and its definition),
    explained fraction, how many tokens are well fit and why the others are flagged."""
    fit, spec = view.summary, view.spectrum_summary
    steps = fit.get("steps") or []
    quartiles = spec.get("learning_step_quartiles") or [float("nan")] * 3
    return render(
        "learning_spectrum_section.html.j2",
        spectrum_svg=svg_markup(charts.spectrum_svg(view.spectrum, {**spec, "well_fit": fit.get("well_fit", 0)})),
        tokens=f"{int(fit['tokens']):,}",
        positions=int(fit["positions"]),
        first_step=steps[0] if steps else "?",
        last_step=steps[-1] if steps else "?",
        well_fit=f"{int(fit['well_fit']):,}",
        well_fit_pct=_pct(fit["well_fit_fraction"]),
        flags=[(name, f"{int(fit['flag_counts'].get(name, 0)):,}") for name in FLAG_NAMES.values()],
        error=f"{spec['reconstruction_error']:.3f}",
        fitted_all_error=f"{spec['fitted_all_error']:.3f}",
        explained_pct=_pct(spec["explained_fraction"]),
        loss_first=f"{spec['mean_loss_first']:.3f}",
        loss_last=f"{spec['mean_loss_last']:.3f}",
        bins=int(spec["bins"]),
        quartiles=[_step(q) for q in quartiles],
        min_step=(fit.get("min_step") or 0),
    )


def together_sentence(summary: Mapping) -> str:
    """The headline: "17 of 30 clusters are learned more tightly together than random groups of the
    same size and loss (BH q < 0.05; …; global p = 0.001)", or why nothing was tested."""
    if not summary.get("tested"):
        return (f"No cluster has {summary.get('min_tokens', '?')} or more well-fit tokens: nothing to test "
                f"({summary.get('clusters', 0)} clusters).")
    return (f"{summary['tighter']} of {summary['tested']} tested clusters are learned more tightly together than "
            f"random groups of the same size and loss (Benjamini–Hochberg q < {summary['alpha']:g}; raw p < "
            f"{summary['alpha']:g} for {_pct(summary['fraction_p_below_alpha'])} % of them, about "
            f"{100 * summary['alpha']:g} % if no cluster were special; median IQR ratio to random "
            f"{summary['median_ratio']:.2f}; global p = {summary['global_p_value']:.3g}).")


def together_section_html(table: pd.DataFrame, summary: Mapping) -> str:
    """The section "Are quanta learned at once?": the statistic with its baseline and test, and the
    observed-vs-random chart (model page, and the reference step's report)."""
    return render(
        "learned_together_section.html.j2",
        sentence=together_sentence(summary),
        chart=svg_markup(charts.learned_together_svg(table, dict(summary))) if summary.get("tested") else None,
        test=str(summary.get("test", "")),
        baseline=BASELINE,
        permutations=int(summary.get("permutations", 0)),
        loss_bins=int(summary.get("loss_bins", 0)),
        min_tokens=int(summary.get("min_tokens", 0)),
        clusters=int(summary.get("clusters", 0)),
        tested=int(summary.get("tested", 0)),
    )


def cluster_sentences(table: pd.DataFrame) -> dict[int, str]:
    """Cluster rank → its learned-together sentence for the report's panel (numbers only)."""
    return {cluster: extra["text"] for cluster, extra in cluster_panel_extras(table).items()}


def cluster_columns(table: pd.DataFrame) -> dict[int, dict]:
    """Cluster rank → the model page's table cells: ``text`` ("IQR 0.21 vs 0.55, q 0.03" or "—") and
    ``sort`` (the IQR ratio; untested last)."""
    out = {}
    for row in table.itertuples(index=False):
        if not row.tested or not np.isfinite(row.ratio):
            out[int(row.cluster)] = {"text": "—", "sort": 1e9, "tighter": False}
            continue
        out[int(row.cluster)] = {"text": f"{row.iqr:.2f} vs {row.null_iqr_median:.2f}, q {row.q_value:.2g}",
                                 "sort": f"{row.ratio:.6g}", "tighter": bool(row.tighter)}
    return out


def render_scale_page(family: str, step: str, fits: pd.DataFrame, points: pd.DataFrame, summary: Mapping) -> str:
    """A self-contained page of a family's scale curves at one step: "learned at size N" (sharp vs
    gradual) and the models used (``points``: ``name``, ``num_parameters``, ``mean_loss``)."""
    well = fits["flags"].to_numpy() == 0
    log_sizes = np.log10(points["num_parameters"].to_numpy(dtype=np.float64))
    chart = charts.scale_histogram_svg(fits["midpoint_x"].to_numpy(), fits["sharp"].to_numpy(), well, log_sizes)
    models = [{"name": str(r.name), "parameters": f"{int(r.num_parameters):,}", "mean_loss": f"{r.mean_loss:.3f}"}
              for r in points.itertuples(index=False)]
    return render(
        "scale_curves.html.j2",
        family=family, step=step, chart=svg_markup(chart), models=models,
        tokens=f"{int(summary['tokens']):,}", well_fit=f"{int(summary['well_fit']):,}",
        well_fit_pct=_pct(summary["well_fit_fraction"]), sharp=f"{int(summary['sharp']):,}",
        gradual=f"{int(summary['gradual']):,}",
        sharp_limit=f"{summary['sharp_max_transition_decades']:.3f}",
        flags=[(name, f"{int(summary['flag_counts'].get(name, 0)):,}") for name in FLAG_NAMES.values()],
    )
