"""A real GPU-heavy stage as a Slurm job: ``pile_losses`` (the product's asset and stage) of a tiny
GPT-NeoX checkpoint in hub layout, with ``backend: slurm`` against the private test cluster, must
write the same bytes as ``backend: local`` and show the same metadata plus Slurm's."""

import dagster as dg
import numpy as np
import pytest

from helpers import cache_resources, corpus_of_documents, make_tiny_gptneox, write_demo_checkpoint

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
PARTITION = dg.MultiPartitionKey({"model": "quanta-demo", "step": "step0"})
RUN_DEPENDENT = {"tokens_per_second", "seconds", "stage_seconds", "compute_backend", "compute_host", "compute_pid"}


def materialize_pile_losses(cache_dir, corpus, model, backend: str, memory: str = "2G", launcher: str = "sbatch"):
    from quanta_assets.assets.losses import pile_losses
    from quanta_assets.compute import ComputeResource
    from quanta_assets.resources import ModelLoader
    from quanta_assets.settings import LossSettings

    @dg.asset(name="pile_canonical")
    def pile_canonical() -> dict:
        return corpus.to_arrays()

    write_demo_checkpoint(cache_dir, "step0", model)
    compute = ComputeResource(backend=backend, shared_dir=str(cache_dir), slurm_time_limit="10", slurm_memory=memory,
                              slurm_launcher=launcher)
    resources = {**cache_resources(cache_dir), "models": ModelLoader(device="cpu"), "loss_settings": LossSettings(),
                 "compute": compute}
    dg.materialize([pile_canonical], resources=resources)
    result = dg.materialize([pile_canonical, pile_losses], selection=[pile_losses.key], partition_key=PARTITION,
                            resources=resources)
    metadata = result.asset_materializations_for_node("pile_losses")[0].metadata
    return (cache_dir / "quanta-demo" / "step0" / "pile_losses.npy").read_bytes(), {
        k: getattr(v, "value", v) for k, v in metadata.items()}


def tiny_case():
    rng = np.random.default_rng(0)
    corpus = corpus_of_documents([rng.integers(0, 50_304, n) for n in (0, 1, 120, 40, 2, 77)])
    return corpus, make_tiny_gptneox(vocab_size=50_304, hidden=32, layers=2, heads=4)


@pytest.mark.parametrize("launcher", ["sbatch", "srun"])
def test_pile_losses_as_a_slurm_job_writes_the_local_table(slurm_cluster, tmp_path, launcher):
    corpus, model = tiny_case()
    local, local_metadata = materialize_pile_losses(tmp_path / "local", corpus, model, "local")
    slurm, slurm_metadata = materialize_pile_losses(tmp_path / "slurm", corpus, model, "slurm", launcher=launcher)
    assert slurm == local
    assert slurm_metadata["slurm_state"] == "COMPLETED" and slurm_metadata["slurm_node"] in ("n1", "n2")
    shared = {k for k in local_metadata if k not in RUN_DEPENDENT | {"path"} and not k.startswith("slurm_")}
    assert {k: slurm_metadata[k] for k in shared} == {k: local_metadata[k] for k in shared}
    assert not list((tmp_path / "slurm" / ".pipes").iterdir())


def test_a_job_over_its_memory_limit_fails_the_step_and_writes_nothing(slurm_cluster, tmp_path):
    corpus, model = tiny_case()
    with pytest.raises(dg.Failure) as failure:
        materialize_pile_losses(tmp_path, corpus, model, "slurm", memory="200M")
    assert "exceeded memory limit" in failure.value.description, failure.value.description
    assert "OUT_OF_MEMORY" in failure.value.description or "FAILED" in failure.value.description
    folder = tmp_path / "quanta-demo" / "step0"
    assert not [p.name for p in folder.iterdir() if "pile_losses" in p.name] if folder.exists() else True
