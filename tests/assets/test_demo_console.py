"""What ``make demo`` prints: the stages' progress lines without Dagster's DEBUG events, and at the
end the paths of both pages (the report and the model page)."""

import dagster as dg

from quanta_assets import demo
from quanta_assets.partitions import checkpoint_key, checkpoint_partitions, model_partitions
from quanta_core.presets import DEMO_MODEL

STEPS = ["step256", "step512"]


@dg.asset(partitions_def=checkpoint_partitions)
def quanta_report(context: dg.AssetExecutionContext, cache_path: dg.ResourceParam[str]) -> dg.MaterializeResult:
    context.log.info("progress: report 3 of 3 clusters")
    context.log.debug("a debug detail")
    path = f"{cache_path}/quanta_report.html"
    with open(path, "w") as f:
        f.write("<html></html>")
    return dg.MaterializeResult(metadata={"path": dg.MetadataValue.path(path)})


@dg.asset(partitions_def=model_partitions)
def quanta_training_dynamics(cache_path: dg.ResourceParam[str]) -> dg.MaterializeResult:
    with open(f"{cache_path}/page.html", "w") as f:
        f.write("<html></html>")
    return dg.MaterializeResult(metadata={"path": dg.MetadataValue.path(cache_path)})


def test_progress_lines_without_debug_events_and_both_pages_printed(tmp_path, capfd):
    defs = dg.Definitions(assets=[quanta_report, quanta_training_dynamics], resources={"cache_path": str(tmp_path)})
    job, graph = defs.resolve_implicit_global_asset_job_def(), defs.resolve_asset_graph()
    with dg.instance_for_test() as instance:
        report = demo.Run(str(checkpoint_key(DEMO_MODEL, STEPS[-1])), [dg.AssetKey("quanta_report")])
        assert demo.execute(job, report, instance)
        shown = capfd.readouterr()
        console = shown.out + shown.err
        assert "progress: report 3 of 3 clusters" in console
        assert " - DEBUG - " not in console and "a debug detail" not in console
        assert demo.result_pages(instance, graph, STEPS) == {"report": str(tmp_path / "quanta_report.html")}
        assert demo.execute(job, demo.Run(DEMO_MODEL, [dg.AssetKey("quanta_training_dynamics")]), instance)
        assert demo.result_pages(instance, graph, STEPS) == {
            "report": str(tmp_path / "quanta_report.html"), "model page": str(tmp_path / "page.html")}
