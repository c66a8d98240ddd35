"""``quanta_report`` and ``quanta_report_samples`` (per checkpoint; one per study): the self-contained HTML page to
browse the clusters, and next to it the complete samples table (Parquet) — the page holds only
some samples of the largest clusters when all of them would not fit its size budget."""

import time

import dagster as dg

from quanta_assets.automation import follow_upstream
from quanta_assets.code_versions import require_declared_settings
from quanta_assets.partitions import BY_MODEL, checkpoint_partitions, model_and_step
from quanta_assets.settings import ReportSettings
from quanta_assets.studies import DEFAULT_STUDY, Study
from quanta_core.clustering.tokens import clusters_digest
from quanta_core.corpus.canonical import CanonicalCorpus
from quanta_core.corpus.tokenizer import load_tokenizer
from quanta_core.learning import dynamics
from quanta_core.report import dynamics_page
from quanta_core.report import page as report
from quanta_core.report import table as report_table
from quanta_core.report.stability_view import stability_extras, stability_section_html
from quanta_core.report.token_text import token_bytes_table

TABLE_FILE = "quanta_report_samples.parquet"  # the samples table's file, next to quanta_report.html

REPORT_DESCRIPTION = (
    "The cluster report: one self-contained HTML file (no network access) to browse every cluster "
    "of quanta_clusters — dropdown and ←/→ keys, links #cluster-N, sort by size or mean loss, search "
    "by cluster number or predicted token; per cluster its size, loss, predicted tokens and samples "
    "with 300 tokens of context before the highlighted target. The page stays under "
    "report_settings.max_page_mb (16 MB): when every sample does not fit, it holds the same number of "
    "samples (drawn at random, seeded) of every larger cluster, says so, and names quanta_report_samples "
    "(next to it) for the rest; sizes, losses, predicted tokens and search always cover every sample. When "
    "quanta_training_dynamics of the model follows this step's clusters, each cluster also shows its loss "
    "over training (sparkline) and learned-at step, sortable, plus the distribution of learned-at steps; "
    "with the model's token_learning_times, each cluster also says whether its tokens are learned together "
    "(IQR of their learning times vs random groups of the same size and loss, permutation p and BH q). "
    "File `<cache>/<model>/<step>/quanta_report.html`; open it in a browser."
)
SAMPLES_DESCRIPTION = (
    "Every sample of quanta_report, one row each (sorted by cluster rank): cluster, index, document, "
    "position, token_id, loss (nats), in_page (the HTML page holds it) and the text of its context — "
    "text_before, text_target, text_after (report_settings.before/after tokens). "
    f"File `<cache>/<model>/<step>/{TABLE_FILE}`, next to quanta_report.html."
)


def report_asset(study: Study = DEFAULT_STUDY) -> dg.AssetsDefinition:
    """``quanta_report`` + ``quanta_report_samples`` of ``study``: always materialized together (the
    table holds the page's choice of samples, so the two can never disagree)."""
    settings_key = study.resource_key("report_settings")
    prefix = study.key_prefix

    @dg.multi_asset(
        name=f"{study.key}__quanta_report" if study.key else "quanta_report",
        partitions_def=checkpoint_partitions,
        group_name=study.group("report"),
        outs={
            # 5: never apart from the samples table; learned-at figures only for the clusters they follow
            "quanta_report": dg.AssetOut(key=[*prefix, "quanta_report"], code_version="5",
                                         description=REPORT_DESCRIPTION + study.note(),
                                         automation_condition=follow_upstream()),
            "quanta_report_samples": dg.AssetOut(key=[*prefix, "quanta_report_samples"], code_version="2",
                                                 description=SAMPLES_DESCRIPTION + study.note(),
                                                 automation_condition=follow_upstream()),
        },
        ins={
            "quanta_clusters": dg.AssetIn(key=[*prefix, "quanta_clusters"]),
            "pile_canonical": dg.AssetIn(key="pile_canonical"),
            # the model's training dynamics, when they follow this step's clusters (optional)
            "quanta_training_dynamics": dg.AssetIn(key=[*prefix, "quanta_training_dynamics"],
                                                   partition_mapping=BY_MODEL,
                                                   metadata={"allow_missing_partitions": True}),
            # which clusters are real, and the paper's envelope (optional)
            **{name: dg.AssetIn(key=[*prefix, name], metadata={"allow_missing_partitions": True})
               for name in ("quanta_cluster_stability", "quanta_cluster_sweep")},
        },
        required_resource_keys={settings_key, "pile"},
        can_subset=False,
    )
    def quanta_report(context: dg.AssetExecutionContext, quanta_clusters: dict, pile_canonical: dict,
                      quanta_training_dynamics: dict | None, quanta_cluster_stability: dict | None,
                      quanta_cluster_sweep: dict | None):
        require_declared_settings(context)
        yield from _report(context, study, getattr(context.resources, settings_key), quanta_clusters,
                           pile_canonical, quanta_training_dynamics, quanta_cluster_stability, quanta_cluster_sweep)

    return quanta_report


quanta_report = report_asset()


def _report(context, study: Study, settings: ReportSettings, quanta_clusters: dict, pile_canonical: dict,
            quanta_training_dynamics: dict | None, stability: dict | None = None, sweep: dict | None = None):
    model, step = model_and_step(context)
    started = time.perf_counter()
    tokens = quanta_clusters["tokens"]
    digest = clusters_digest(tokens["index"].to_numpy(), tokens["cluster"].to_numpy())
    stored = dynamics.TrainingDynamics.from_stored(quanta_training_dynamics) if quanta_training_dynamics else None
    extras, sections = dynamics_page.report_extras(stored, step, digest)
    if extras:
        context.log.info(f"adding loss-over-training curves of {len(extras)} clusters")
    else:
        context.log.info(f"no quanta_training_dynamics of {model} follows these clusters of {step}: "
                         "the report has no loss-over-training curves")
    extras, sections = _with_stability(extras, sections, stability, sweep, digest, context)
    corpus = CanonicalCorpus.from_arrays(pile_canonical)
    token_bytes = token_bytes_table(load_tokenizer(context.resources.pile.tokenizer_path))
    context_tokens = {"before": settings.before, "after": settings.after}
    page = report.report_page(
        tokens, corpus, token_bytes, **context_tokens,
        title=f"Quanta clusters · {model} · {step}" + (f" · study {study.name}" if study.key else ""),
        details={"model": model, "step": step, "study": study.name,
                 "clusters asset": f"{study.asset_key('quanta_clusters')} {model}|{step} (digest {digest})"},
        cluster_extras=extras or None,
        extra_sections_html=sections or None,
        max_bytes=round(settings.max_page_mb * 1e6),
        table_file=TABLE_FILE,
    )
    rendered = time.perf_counter() - started
    held = "every sample" if page.cap is None else f"{int(page.in_page.sum())} samples, ≤ {page.cap} per cluster"
    context.log.info(f"report: {page.size_bytes / 1e6:.1f} MB in {rendered:.1f} s; the page holds {held}")
    if page.size_bytes > settings.max_page_mb * 1e6:
        context.log.warning(f"report: {page.size_bytes / 1e6:.1f} MB is over max_page_mb = "
                            f"{settings.max_page_mb} even with one sample per cluster")
    yield dg.Output(page.html, output_name="quanta_report", metadata={
        **_page_metadata(page, tokens, settings),
        "render_seconds": round(rendered, 2),
        "training_dynamics": bool(extras),
        "clusters_digest": digest,
    })
    started = time.perf_counter()
    table = report_table.samples_table(tokens, corpus, token_bytes, **context_tokens, in_page=page.in_page)
    yield dg.Output(table, output_name="quanta_report_samples", metadata={
        "num_rows": len(table),
        "samples_in_page": int(page.in_page.sum()),
        "build_seconds": round(time.perf_counter() - started, 2),
        "clusters_digest": digest,
    })


def _with_stability(extras: dict, sections: list, stability: dict | None, sweep: dict | None, digest: str,
                    context) -> tuple[dict, list]:
    """The report's extras and sections with each cluster's stability band and coherence z and the
    overview of which clusters are real — only when the stability judged these very clusters."""
    if stability is not None and stability["summary"].get("clusters_digest") not in (None, digest):
        context.log.info("quanta_cluster_stability judged other clusters of this step: not shown")
        stability = None
    if stability is None and sweep is None:
        return extras, sections
    merged = {rank: dict(extras.get(rank, {})) for rank in set(extras)}
    for rank, values in (stability_extras(stability["clusters"]) if stability else {}).items():
        merged.setdefault(rank, {}).update(values)
    section = stability_section_html(stability["summary"] if stability else None,
                                     sweep["summary"] if sweep else None,
                                     sweep["envelope"]["size"].to_numpy() if sweep else None)
    return merged, [section, *sections]


def _page_metadata(page: report.ReportPage, tokens, settings: ReportSettings) -> dict:
    """The report's size, what it holds (and the cap, when there is one) and its settings."""
    return {
        "file_size_bytes": page.size_bytes,
        "file_size_mb": round(page.size_bytes / 1e6, 2),
        "num_clusters": int(tokens["cluster"].max()) + 1,
        "num_samples": len(tokens),
        "samples_in_page": int(page.in_page.sum()),
        **({} if page.cap is None else {"samples_per_cluster_cap": page.cap}),
        "max_page_mb": settings.max_page_mb,
        "before": settings.before,
        "after": settings.after,
    }
