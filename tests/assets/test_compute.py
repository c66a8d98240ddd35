"""The ``compute`` resource without a cluster: settings from fields/environment, per-model
overrides, the ``sbatch`` command line, metadata conversion, and the payload's Dagster-free import."""

import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from quanta_assets.compute.executors import GPU_OP_TAGS, executor_for_backend
from quanta_assets.compute.metadata import to_dagster_metadata
from quanta_assets.compute.resource import ComputeResource, resolve_backend
from quanta_assets.compute.stage_ref import resolve_stage

REPO = Path(__file__).resolve().parents[2]


def test_backend_from_field_then_environment_then_local(monkeypatch):
    monkeypatch.delenv("QUANTA_COMPUTE", raising=False)
    assert ComputeResource().resolved_backend == "local"
    monkeypatch.setenv("QUANTA_COMPUTE", "slurm")
    assert ComputeResource().resolved_backend == "slurm"
    assert ComputeResource(backend="celery").resolved_backend == "celery"
    monkeypatch.setenv("QUANTA_COMPUTE", "kubernetes")
    with pytest.raises(ValueError, match=r"'kubernetes' \(from \$QUANTA_COMPUTE\) is not one of local, slurm, celery"):
        resolve_backend()


def test_slurm_settings_environment_and_model_overrides(monkeypatch):
    monkeypatch.setenv("QUANTA_SLURM_PARTITION", "gpu")
    monkeypatch.setenv("QUANTA_SLURM_MEMORY", "16G")
    monkeypatch.setenv("QUANTA_SLURM_EXTRA_ARGS", "--qos=campaign --constraint='a100|h100'")
    overrides = '{"pythia-12b*": {"gpus": 2, "memory": "200G", "time_limit": "24:00:00"}}'
    compute = ComputeResource(slurm_time_limit="2:00:00", slurm_model_overrides=overrides, slurm_python="/venv/python")
    small, big = compute.job_spec("pythia-70m"), compute.job_spec("pythia-12b-deduped")
    assert (small.partition, small.gpus, small.memory, small.time_limit) == ("gpu", 1, "16G", "2:00:00")
    assert (big.partition, big.gpus, big.memory, big.time_limit) == ("gpu", 2, "200G", "24:00:00")
    cmd = big.command("quanta-x", Path("/shared/logs"))
    assert cmd[:4] == ["sbatch", "--wait", "--parsable", "--no-requeue"]
    assert {"--partition=gpu", "--mem=200G", "--time=24:00:00", "--gres=gpu:2", "--qos=campaign",
            "--constraint=a100|h100", "--error=/shared/logs/quanta-x.err"} <= set(cmd)
    assert cmd[-2:] == ["--wrap", "exec /venv/python -m quanta_assets.compute.payload"]
    srun = ComputeResource(slurm_launcher="srun", slurm_python="/venv/python").job_spec("m").command("x", Path("/l"))
    assert srun[0] == "srun" and srun[-3:] == ["/venv/python", "-m", "quanta_assets.compute.payload"]
    with pytest.raises(ValueError, match="launcher 'qsub' is not one of sbatch, srun"):
        ComputeResource(slurm_launcher="qsub").job_spec("m").command("x", Path("/l"))


def test_bad_overrides_say_what_is_wrong():
    with pytest.raises(ValueError, match="not JSON"):
        ComputeResource(slurm_model_overrides="{pythia").job_spec("pythia-70m")
    with pytest.raises(ValueError, match=r"unknown keys \['gpu'\]"):
        ComputeResource(slurm_model_overrides='{"*": {"gpu": 2}}').job_spec("pythia-70m")


def test_pipes_metadata_becomes_dagster_metadata():
    out = to_dagster_metadata({"n": 3, "path": {"raw_value": "/c/x.npy", "type": "path"},
                               "table": {"raw_value": "| a |", "type": "md"},
                               "plain": {"raw_value": 1.5, "type": "__infer__"}})
    assert out["n"] == 3 and out["plain"] == 1.5
    assert out["path"] == dg.MetadataValue.path("/c/x.npy") and out["table"] == dg.MetadataValue.md("| a |")
    with pytest.raises(ValueError, match="unsupported type 'blob'"):
        to_dagster_metadata({"x": {"raw_value": 1, "type": "blob"}})


def test_stage_names_resolve_or_say_why_not():
    assert resolve_stage("json:dumps").__name__ == "dumps"
    with pytest.raises(ValueError, match="cannot import module 'no_such_module'"):
        resolve_stage("no_such_module:f")
    with pytest.raises(ValueError, match="has no function 'nope'"):
        resolve_stage("json:nope")


def test_payload_imports_no_dagster():
    code = "import sys, quanta_assets.compute.payload; print(sorted(m for m in sys.modules if m.startswith('dagster')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}).stdout
    assert out.strip() == "['dagster_pipes']"


def test_payload_outside_pipes_exits_with_a_clear_message():
    proc = subprocess.run([sys.executable, "-m", "quanta_assets.compute.payload"], check=False, capture_output=True,
                          text=True, cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2 and "not started by Dagster Pipes" in proc.stderr


def test_celery_executor_only_for_the_celery_backend(monkeypatch):
    monkeypatch.setenv("QUANTA_CELERY_BROKER", "redis://127.0.0.1:6390/0")
    assert executor_for_backend("local") is None and executor_for_backend("slurm") is None
    executor = executor_for_backend("celery")
    assert executor.name == "quanta_celery"
    assert GPU_OP_TAGS == {"dagster-celery/queue": "gpu"}


def test_local_backend_runs_the_stage_in_process(tmp_path):
    calls = []

    @dg.asset
    def thing(context, compute: ComputeResource) -> dg.MaterializeResult:
        return compute.run(context, "tests_compute_stage:stage", {"x": 2}, model="m")

    sys.modules["tests_compute_stage"] = type(sys)("tests_compute_stage")
    sys.modules["tests_compute_stage"].stage = lambda params, log: calls.append(params) or {"y": params["x"] * 3}
    result = dg.materialize([thing], resources={"compute": ComputeResource(backend="local")})
    metadata = result.asset_materializations_for_node("thing")[0].metadata
    assert calls == [{"x": 2}] and metadata["y"].value == 6 and metadata["compute_backend"].value == "local"
