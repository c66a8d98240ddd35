"""HTML views of the training dynamics: the model-level page, and the extras the per-checkpoint
report of the reference step shows (a sparkline, learned-at step and learned-together sentence per
cluster, the learned-at distribution, the learned-at-once statistic).

Data flows one way, dynamics → report: :func:`report_extras` takes dynamics already loaded (by the
IO manager, via :meth:`TrainingDynamics.from_stored`), and the model page never looks at the
report; it links to it when given ``report_href``. Charts are :mod:`quanta_core.report.charts` (numbers
only); token text reaches the page through the template's autoescape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from quanta_core.corpus.tokenizer import load_tokenizer
from quanta_core.learning.dynamics import TrainingDynamics, learned_at_histogram, overall_curve
from quanta_core.report import charts, learning_page
from quanta_core.report.html import render, svg_markup, trusted_html
from quanta_core.report.learning_page import LearningTimesView
from quanta_core.report.token_text import visible_text

NEVER_SORT_KEY = 10**12  # the page sorts "never learned" after every step


def _learned_steps(learned: pd.DataFrame) -> list[int | None]:
    """Learned-at step number per cluster (``None`` for never), in ``learned``'s row order."""
    return [None if pd.isna(s) else int(s) for s in learned["learned_at_step"]]


def cluster_sparklines(
    curves: pd.DataFrame,
    learned: pd.DataFrame,
    width: int = 160,
    height: int = 36,
) -> dict[int, str]:
    """Cluster rank → sparkline SVG (``width`` × ``height`` px): the ``learned`` statistic with
    the quartile band, the overall mean as reference, the threshold, the learned-at mark."""
    statistic = str(learned["statistic"].iloc[0]) if "statistic" in learned and len(learned) else "mean"
    threshold = float(learned["threshold_nats"].iloc[0]) if "threshold_nats" in learned and len(learned) else None
    overall = overall_curve(curves).set_index("step_number")["overall_mean"]
    when = dict(zip(learned["cluster"].astype(np.int64), learned["learned_at_step"]))
    out = {}
    for cluster, rows in curves.sort_values("step_number").groupby("cluster", sort=True):
        step_numbers = rows["step_number"].to_numpy(dtype=np.int64)
        at = when.get(int(cluster))
        out[int(cluster)] = charts.sparkline_svg(
            step_numbers,
            rows[statistic].to_numpy(dtype=np.float64),
            overall.reindex(step_numbers).to_numpy(dtype=np.float64),
            None if at is None or pd.isna(at) else int(at),
            width,
            height,
            band=(rows["q25"].to_numpy(dtype=np.float64), rows["q75"].to_numpy(dtype=np.float64)),
            threshold_nats=threshold,
        )
    return out


def learned_at_rule(learned: pd.DataFrame) -> str:
    """What a cluster's learned-at step is, in words, with the statistic and the threshold (nats)."""
    statistic, threshold = str(learned["statistic"].iloc[0]), float(learned["threshold_nats"].iloc[0])
    return f"the first checkpoint from which its {statistic} loss stays below {threshold:.3g} nats"


def cluster_extras_for_report(
    curves: pd.DataFrame, learned: pd.DataFrame, together: pd.DataFrame | None = None
) -> dict[int, dict]:
    """What the per-checkpoint report takes as ``cluster_extras``: cluster rank →
    ``{"learned_at": step name | None, "learned_at_step": int | None, "sparkline_svg": str,
    "learned_at_rule": str}`` (the definition, e.g. "the first checkpoint from which its mean loss stays
    below 1 nats"), plus
    ``"learned_together"`` (one sentence, numbers only) when the learned-at-once test ``together``
    is given.

    Only meaningful for the report of the reference step the clusters came from (ranks of other
    steps are other clusters)."""
    sparks = cluster_sparklines(curves, learned)
    sentences = learning_page.cluster_sentences(together) if together is not None else {}
    rule = learned_at_rule(learned)
    extras = {}
    for row, step in zip(learned.itertuples(index=False), _learned_steps(learned)):
        extras[int(row.cluster)] = {
            "learned_at": None if step is None else str(row.learned_at),
            "learned_at_step": step,
            "sparkline_svg": sparks[int(row.cluster)],
            "learned_at_rule": rule,
        }
        if int(row.cluster) in sentences:
            extras[int(row.cluster)]["learned_together"] = sentences[int(row.cluster)]
    return extras


def distribution_section_html(learned: pd.DataFrame, curves: pd.DataFrame) -> str:
    """An HTML fragment (for the report's ``extra_sections_html``): heading, one sentence stating the
    definition and threshold (nats), and the learned-at distribution chart. No corpus text."""
    steps = overall_curve(curves)["step_number"].tolist()
    return render(
        "learned_at_section.html.j2",
        statistic=str(learned["statistic"].iloc[0]),
        threshold=f"{float(learned['threshold_nats'].iloc[0]):.3g}",
        num_steps=len(steps),
        first_step=steps[0],
        last_step=steps[-1],
        distribution_svg=svg_markup(charts.learned_at_distribution_svg(_learned_steps(learned), steps)),
    )


def report_extras(dynamics: TrainingDynamics | None, step: str,
                  clusters_digest: str | None = None) -> tuple[dict[int, dict], list[str]]:
    """``(cluster_extras, extra_sections_html)`` for :func:`quanta_core.report.page.render_report` of
    ``step``, from dynamics already loaded (``None``: not materialized); ``({}, [])`` when there are
    none or they follow another step's clusters (cluster ranks of different steps are different
    clusters). With ``clusters_digest`` (:func:`quanta_core.clustering.tokens.clusters_digest` of the
    report's clusters), dynamics computed on other clusters of the same step (e.g. before a change
    of k) give no figures, only a section saying they are pending for these clusters."""
    if dynamics is None or dynamics.reference_step != step:
        return {}, []
    if clusters_digest is not None and dynamics.summary.get("clusters_digest") != clusters_digest:
        return {}, [render("dynamics_pending_section.html.j2", step=step,
                           followed=dynamics.summary.get("clusters_digest") or "unrecorded",
                           shown=clusters_digest)]
    sections = [distribution_section_html(dynamics.learned, dynamics.curves)]
    if dynamics.together is not None:
        sections.append(learning_page.together_section_html(dynamics.together, dynamics.together_summary))
    return cluster_extras_for_report(dynamics.curves, dynamics.learned, dynamics.together), sections


def _cluster_rows(
    learned: pd.DataFrame, sparks: Mapping[int, str], top_tokens: Mapping[int, Sequence[str]],
    together: pd.DataFrame | None = None,
) -> list[dict]:
    """The page's cluster table: one dict per cluster, by learned-at step (never last), then rank.
    Losses formatted to 3 decimals (nats); ``tokens`` stay raw text (the template escapes them);
    ``together``: the learned-at-once cell (``None`` without the test)."""
    cells = learning_page.cluster_columns(together) if together is not None else {}
    rows = []
    for row, step in zip(learned.itertuples(index=False), _learned_steps(learned)):
        rows.append(
            {
                "cluster": int(row.cluster),
                "n": int(row.n),
                "learned_at": "never" if step is None else str(row.learned_at),
                "learned_sort": step if step is not None else NEVER_SORT_KEY,
                "first_loss": f"{row.first_loss:.3f}",
                "last_loss": f"{row.last_loss:.3f}",
                "sparkline": svg_markup(sparks[int(row.cluster)], f"cluster {int(row.cluster)}: sparkline"),
                "tokens": list(top_tokens.get(int(row.cluster), [])),
                "together": cells.get(int(row.cluster)),
            }
        )
    rows.sort(key=lambda r: (r["learned_sort"], r["cluster"]))
    return rows


def render_dynamics_page(
    model: str,
    reference_step: str,
    curves: pd.DataFrame,
    learned: pd.DataFrame,
    settings: Mapping[str, object] | None = None,
    top_tokens: Mapping[int, Sequence[str]] | None = None,
    report_href: str | None = None,
    learning: LearningTimesView | None = None,
    together: tuple[pd.DataFrame, Mapping] | None = None,
) -> str:
    """The model-level page: a self-contained HTML file (no external resources, light/dark) with
    the learned-at distribution, the overall mean loss over training, and a table of clusters with
    sparklines, sorted by learned-at step (clickable headers re-sort).

    ``curves``/``learned``: as :func:`quanta_core.learning.dynamics.cluster_loss_curves` and
    :func:`~quanta_core.learning.dynamics.learned_at` return them; ``settings``: shown as a list (escaped);
    ``top_tokens``: optional cluster → most common target tokens (untrusted text, escaped by the
    template); ``report_href``: link to the reference step's cluster report (e.g.
    ``"../step143000/quanta_report.html"``), or ``None`` for no link. The page does not check
    that the report exists: it is built downstream of these dynamics. ``learning``: the model's
    token learning times (the spectrum section); ``together``: ``(table, summary)`` of the
    learned-at-once test (its section and a table column); ``None`` leaves them out."""
    overall = overall_curve(curves)
    steps = overall["step_number"].tolist()
    overall_svg = charts.loss_over_training_svg(steps, overall["overall_mean"].tolist(), title="mean loss (nats)")
    return render(
        "dynamics.html.j2",
        model=model,
        reference_step=reference_step,
        threshold=f"{float(learned['threshold_nats'].iloc[0]):.4g}",
        statistic=str(learned["statistic"].iloc[0]),
        num_steps=len(steps),
        first_step=str(overall["step"].iloc[0]),
        last_step=str(overall["step"].iloc[-1]),
        num_clusters=len(learned),
        num_learned=int(learned["learned_at_step"].notna().sum()),
        distribution_svg=svg_markup(charts.learned_at_distribution_svg(_learned_steps(learned), steps)),
        overall_svg=svg_markup(overall_svg),
        overall_first=f"{overall['overall_mean'].iloc[0]:.3f}",
        overall_last=f"{overall['overall_mean'].iloc[-1]:.3f}",
        histogram=learned_at_histogram(learned).to_dict("records"),
        rows=_cluster_rows(learned, cluster_sparklines(curves, learned), top_tokens or {},
                           together[0] if together is not None else None),
        has_together=together is not None,
        learning_sections=_learning_sections(learning, together),
        settings={str(k): str(v) for k, v in (settings or {}).items()},
        report_href=report_href,
    )


def _learning_sections(learning: LearningTimesView | None, together: tuple[pd.DataFrame, Mapping] | None) -> list:
    """The model page's learning-time sections as template markup (our own autoescaped fragments)."""
    sections = [learning_page.spectrum_section_html(learning)] if learning is not None else []
    if together is not None:
        sections.append(learning_page.together_section_html(*together))
    return [trusted_html(fragment) for fragment in sections]


def top_tokens(tokens: pd.DataFrame, count: int, tokenizer_path=None) -> dict[int, list[str]]:
    """Cluster → its ``count`` most common target tokens, decoded (untrusted text: escaped by the
    page), whitespace made visible as on the report (:func:`~quanta_core.report.token_text.visible_text`:
    space ·, newline ↵). ``tokens``: a clusters table with ``cluster`` and ``token_id``."""
    if count <= 0 or "token_id" not in tokens.columns:
        return {}
    tokenizer = load_tokenizer(tokenizer_path)
    return {int(cluster): [visible_text(tokenizer.decode([int(t)])) for t in ids.value_counts().head(count).index]
            for cluster, ids in tokens.groupby("cluster")["token_id"]}
