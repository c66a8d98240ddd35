"""``quanta_report`` (per checkpoint): the self-contained HTML page to browse the clusters."""

import time

import dagster as dg

from quanta_assets.automation import follow_upstream
from quanta_assets.partitions import BY_MODEL, checkpoint_partitions, model_and_step
from quanta_assets.resources import PileSource
from quanta_assets.settings import ReportSettings
from quanta_core import dynamics, dynamics_page, report
from quanta_core.canonical import CanonicalCorpus
from quanta_core.token_bytes import token_bytes_table
from quanta_core.tokenizer import load_tokenizer


@dg.asset(
    partitions_def=checkpoint_partitions,
    group_name="quanta",
    code_version="3",  # 3: each cluster panel shows its learned-together sentence
    automation_condition=follow_upstream(),
    ins={
        "quanta_clusters": dg.AssetIn(),
        "pile_canonical": dg.AssetIn(),
        # the model's training dynamics, when they follow this step's clusters (optional)
        "quanta_training_dynamics": dg.AssetIn(
            partition_mapping=BY_MODEL,
            metadata={"allow_missing_partitions": True},
        ),
    },
    description=(
        "The cluster report: one self-contained HTML file (no network access) to browse every cluster "
        "of quanta_clusters — dropdown and ←/→ keys, links #cluster-N, sort by size or mean loss, search "
        "by cluster number or predicted token; per cluster its size, loss, predicted tokens and samples "
        "with 300 tokens of context before the highlighted target. When quanta_training_dynamics of "
        "the model follows this step's clusters, each cluster also shows its loss over training "
        "(sparkline) and learned-at step, sortable, plus the distribution of learned-at steps; with the model's "
        "token_learning_times, each cluster also says whether its tokens are learned together (IQR of their "
        "learning times vs random groups of the same size and loss, permutation p and BH q). "
        "File `<cache>/<model>/<step>/quanta_report.html`; open it in a browser."
    ),
)
def quanta_report(
    context: dg.AssetExecutionContext,
    quanta_clusters: dict,
    pile_canonical: dict,
    quanta_training_dynamics: dict | None,
    pile: PileSource,
    report_settings: ReportSettings,
) -> str:
    model, step = model_and_step(context)
    started = time.perf_counter()
    tokens = quanta_clusters["tokens"]
    stored = dynamics.TrainingDynamics.from_stored(quanta_training_dynamics) if quanta_training_dynamics else None
    extras, sections = dynamics_page.report_extras(stored, step)
    if extras:
        context.log.info(f"adding loss-over-training curves of {len(extras)} clusters")
    else:
        context.log.info(f"no quanta_training_dynamics of {model} follows the clusters of {step}: "
                         "the report has no loss-over-training curves")
    html = report.render_report(
        tokens,
        CanonicalCorpus.from_arrays(pile_canonical),
        token_bytes_table(load_tokenizer(pile.tokenizer_path)),
        before=report_settings.before,
        after=report_settings.after,
        title=f"Quanta clusters · {model} · {step}",
        details={"model": model, "step": step, "clusters asset": f"{model}/{step}/quanta_clusters"},
        cluster_extras=extras or None,
        extra_sections_html=sections or None,
    )
    size = len(html.encode("utf-8"))
    context.log.info(f"report: {size / 1e6:.1f} MB in {time.perf_counter() - started:.1f} s")
    context.add_output_metadata(
        {
            "file_size_bytes": size,
            "file_size_mb": round(size / 1e6, 2),
            "num_clusters": int(tokens["cluster"].max()) + 1,
            "num_samples": len(tokens),
            "before": report_settings.before,
            "after": report_settings.after,
            "render_seconds": round(time.perf_counter() - started, 2),
            "training_dynamics": bool(extras),
        }
    )
    return html
