"""Fixtures of the cluster tests: a private Slurm cluster, a Redis broker, a Dagster deployment.

The engines are real (``scripts/local_cluster.py``: slurmctld, two slurmd with a fake GPU each,
slurmdbd on MariaDB, munge; Redis), installed by ``scripts/install-cluster-deps.sh`` (``make test``
runs it). A missing program fails the tests under CI (``CI=true``) and skips them elsewhere.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _load_local_cluster():
    spec = importlib.util.spec_from_file_location("local_cluster", REPO / "scripts" / "local_cluster.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["local_cluster"] = module
    spec.loader.exec_module(module)
    return module


local_cluster = _load_local_cluster()


def require(slurm: bool, redis: bool) -> None:
    """Fail under CI, skip elsewhere, when the cluster's programs (or root) are missing."""
    problems = local_cluster.missing_programs(slurm, redis)
    reason = f"missing {problems}: run scripts/install-cluster-deps.sh" if problems else ""
    if not reason and slurm and os.geteuid() != 0:
        reason = "the private Slurm test cluster runs its daemons as root"
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"cluster test cannot run in CI: {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """Slurm with nodes n1, n2 (one ``gres/gpu`` each); ``SLURM_CONF`` points at it for this session."""
    require(slurm=True, redis=False)
    cluster = local_cluster.LocalCluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.slurm_conf)
    yield cluster
    cluster.stop()
    if old is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = old


@pytest.fixture(scope="session")
def redis_broker(tmp_path_factory) -> str:
    """A Redis on 127.0.0.1 without persistence; yields its URL."""
    require(slurm=False, redis=True)
    cluster = local_cluster.LocalCluster(tmp_path_factory.mktemp("redis"), redis=True)
    cluster.start(slurm=False)
    yield cluster.env["QUANTA_CELERY_BROKER"]
    cluster.stop()


@pytest.fixture(scope="session")
def slurm_deployment(slurm_cluster, tmp_path_factory):
    """``dagster dev`` with ``QUANTA_COMPUTE=slurm`` against the test cluster."""
    from support.dagster_deployment import Deployment

    deployment = Deployment(tmp_path_factory.mktemp("dagster-slurm"),
                            {"QUANTA_COMPUTE": "slurm", "SLURM_CONF": str(slurm_cluster.slurm_conf)})
    try:
        yield deployment.start()
    finally:
        deployment.stop()


@pytest.fixture
def local_results(tmp_path, monkeypatch):
    """``local_results(partition)`` → the bytes of ``losses.npy`` and the metadata of a local run."""
    import dagster as dg

    from quanta_assets.compute.resource import ComputeResource

    from support.cluster_location import partition_dir, tiny_losses, tiny_tokens

    monkeypatch.setenv("QUANTA_CACHE_DIR", str(tmp_path / "local-cache"))

    def run(partition: str) -> tuple[bytes, dict]:
        result = dg.materialize([tiny_tokens, tiny_losses], partition_key=partition,
                                resources={"compute": ComputeResource(backend="local")},
                                instance=dg.DagsterInstance.ephemeral())
        mat = result.asset_materializations_for_node("tiny_losses")[0]
        metadata = {key: getattr(value, "value", value) for key, value in mat.metadata.items()}
        return (partition_dir(partition) / "losses.npy").read_bytes(), metadata

    return run
