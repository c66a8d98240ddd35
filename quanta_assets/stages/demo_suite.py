"""Stage ``quanta_demo_suite``: train the embedded demo GPT-NeoX on the mini-Pile (or reuse a
suite trained with the same settings) into ``<cache>/hub``; writes the summary to
``<cache>/corpus/quanta_demo_suite/summary.json``.

``params``: ``cache_dir``, ``corpus`` (the ``pile_canonical`` directory), ``output``, ``config``
(the fields of :class:`quanta_core.models.demo_suite.DemoSuiteConfig`), ``seed``, ``retrain``.
"""

from __future__ import annotations

from quanta_assets.stages import json_value, md, path
from quanta_core import store
from quanta_core.corpus.canonical import CanonicalCorpus
from quanta_core.models.demo_suite import DemoSuiteConfig, demo_repo_dir, existing_demo_suite, train_demo_suite
from quanta_core.paths import hub_dir


def config_from_params(raw: dict) -> DemoSuiteConfig:
    """The config from its JSON form (lists back to tuples)."""
    return DemoSuiteConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})


def summary_metadata(summary: dict, reused: bool) -> dict:
    curve = summary["curve_mean_loss"]
    table = "| step | commit | mean loss on the curve sample (nats) |\n|---|---|---|\n" + "\n".join(
        f"| {s} | `{summary['commits'][s][:12]}` | {curve[s]:.4f} |" for s in summary["steps"]
    )
    return {
        "hub_repo": path(summary["repo_dir"]),
        "repo_id": summary["repo_id"],
        "reused_existing": reused,
        "steps": json_value(summary["steps"]),
        "losses_by_step": md(table),
        "curve_tokens": summary["curve_tokens"],
        "step0_mean_loss_nats": round(summary["step0_mean_loss"], 4),
        "final_mean_loss_nats": round(summary["final_mean_loss"], 4),
        "fraction_below_0.1_nats": round(summary["fraction_below_0.1_nats"], 4),
        "fraction_below_1_bit": round(summary["fraction_below_1_bit"], 4),
        "not_trigram_flagged_below_0.1_nats": summary["qualifying_below_0.1_nats"],
        "not_trigram_flagged_below_1_bit": summary["qualifying_below_1_bit"],
        **{k: summary[k] for k in ("predictable_tokens", "tokens_trained", "epochs", "parameters", "train_seconds",
                                   "eval_seconds", "torch_threads")},
        "settings": json_value(summary["settings"]),
    }


def run(params: dict, log) -> dict:
    corpus = CanonicalCorpus.load(params["corpus"])
    hub = hub_dir(params["cache_dir"])
    config = config_from_params(params["config"])
    summary = None if params["retrain"] else existing_demo_suite(hub, corpus, config, params["seed"])
    reused = summary is not None
    if reused:
        summary["repo_dir"] = str(demo_repo_dir(hub))
        log(f"demo suite with the same settings already in {summary['repo_dir']}: not retraining")
    else:
        log(f"training the demo suite into {hub} ({config})")
        summary = train_demo_suite(corpus, hub, config, seed=params["seed"], progress=log)
    written = store.write_value(params["output"], {"summary": summary})
    return {"path": path(written), **summary_metadata(summary, reused)}
