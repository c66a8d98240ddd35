"""``quanta_study_comparison`` (per checkpoint): the studies' clusters of one checkpoint side by side."""

import dagster as dg
import pandas as pd

from quanta_assets.partitions import checkpoint_partitions, model_and_step
from quanta_assets.studies import Study
from quanta_core.clustering.compare import compare_studies
from quanta_core.clustering.tokens import clusters_digest
from quanta_core.report.html import render

DESCRIPTION = (
    "Every study's quanta_clusters of this checkpoint, side by side: for each pair of studies the tokens "
    "both selected and the ARI / NMI of their clusters on them; for each study its tokens, clusters and "
    "the slope of log(cluster size) against log(rank). Studies not materialized for the partition are "
    "named, not compared. Directory `<cache>/<model>/<step>/quanta_study_comparison/`: `pairs.parquet` "
    "(study_a, study_b, shared_tokens, adjusted_rand, nmi), `studies.parquet` (study, tokens, clusters, "
    "size_slope, clusters_digest) and `page.html`."
)


def _input_name(study: Study) -> str:
    return f"clusters_{study.key or 'default'}"


def comparison_asset(studies: list[Study], problems: list[str] = ()) -> dg.AssetsDefinition:
    """The comparison over ``studies`` (the default study included); ``problems``: study files
    left out, named on the page."""

    @dg.asset(
        name="quanta_study_comparison",
        partitions_def=checkpoint_partitions,
        ins={_input_name(s): dg.AssetIn(key=[*s.key_prefix, "quanta_clusters"],
                                        metadata={"allow_missing_partitions": True}) for s in studies},
        group_name="studies",
        code_version="1",
        description=DESCRIPTION + (" Left out: " + "; ".join(problems) if problems else ""),
    )
    def quanta_study_comparison(context: dg.AssetExecutionContext, **clusters: dict | None) -> dict:
        model, step = model_and_step(context)
        present = {s.name: clusters[_input_name(s)]["tokens"] for s in studies if clusters[_input_name(s)]}
        missing = [s.name for s in studies if not clusters[_input_name(s)]]
        if not present:
            raise FileNotFoundError(f"no study has quanta_clusters for {model}|{step}")
        pairs, table = compare_studies(present)
        table["clusters_digest"] = [clusters_digest(present[n]["index"].to_numpy(), present[n]["cluster"].to_numpy())
                                    for n in table["study"]]
        context.log.info(f"{len(present)} studies compared ({', '.join(present)}); not materialized: "
                         f"{', '.join(missing) or 'none'}")
        context.add_output_metadata({
            "studies": ", ".join(present), "not_materialized": ", ".join(missing),
            "pairs": dg.MetadataValue.md(pairs.round(4).to_markdown(index=False)) if len(pairs) else "none",
        })
        return {"pairs": pairs, "studies": table, "page": _page(model, step, studies, pairs, table, missing,
                                                               problems)}

    return quanta_study_comparison


def _page(model, step, studies, pairs: pd.DataFrame, table: pd.DataFrame, missing, problems) -> str:
    keys = {s.name: s.key for s in studies}
    rows = [{**r, "size_slope": f"{r['size_slope']:.3f}", "digest": r["clusters_digest"],
             "report_href": "/".join(["..", *([keys[r["study"]]] if keys[r["study"]] else []), "quanta_report.html"])}
            for r in table.to_dict("records")]
    pair_rows = [{**p, "adjusted_rand": f"{p['adjusted_rand']:.3f}", "nmi": f"{p['nmi']:.3f}"}
                 for p in pairs.to_dict("records")]
    return render("study_comparison.html.j2", model=model, step=step, studies=rows, pairs=pair_rows,
                  missing=missing, problems=list(problems))
