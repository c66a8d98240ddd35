"""A real GPU-heavy stage as a Slurm job: ``pile_losses`` (the product's asset and stage) of a tiny
GPT-NeoX checkpoint in hub layout, with ``backend: slurm`` against the private test cluster, must
write the same bytes as ``backend: local`` and show the same metadata plus Slurm's."""

import dagster as dg
import numpy as np
import pytest

from support.helpers import cache_resources, corpus_of_documents, make_tiny_gptneox, write_demo_checkpoint

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



def test_cli_materializes_a_pythia_partition_as_a_slurm_job(slurm_cluster, tmp_path):
    """The issue's acceptance command: ``QUANTA_COMPUTE=slurm dagster asset materialize -m
    quanta_assets.definitions --select pile_losses --partition 'pythia-70m|step143000'`` against a
    hub-layout cache (a tiny GPT-NeoX as that revision) and a Pile file writes the local table."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    import zstandard

    from support.helpers import write_hub_revision

    hub, pile, home = tmp_path / "hub", tmp_path / "pile.jsonl.zst", tmp_path / "home"
    docs = [{"text": f"def f{i}(x):\n    return x * {i} + {i * i}\n" * (1 + i % 5), "meta": {"pile_set_name": "Github"}}
            for i in range(60)]
    pile.write_bytes(zstandard.ZstdCompressor().compress("".join(json.dumps(d) + "\n" for d in docs).encode()))
    write_hub_revision(hub, "EleutherAI/pythia-70m", "step143000", make_tiny_gptneox(vocab_size=50_304))
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {**os.environ, "DAGSTER_HOME": str(home), "QUANTA_CACHE_DIR": str(tmp_path / "cache"),
           "HF_HUB_CACHE": str(hub), "HF_HUB_OFFLINE": "1", "QUANTA_PILE": str(pile)}

    def materialize(selection: str, backend: str, *partition: str) -> str:
        proc = subprocess.run([Path(sys.executable).parent / "dagster", "asset", "materialize", "-m",
                               "quanta_assets.definitions", "--select", selection, *partition],
                              env={**env, "QUANTA_COMPUTE": backend}, capture_output=True, text=True, timeout=600,
                              check=False)
        assert proc.returncode == 0, proc.stderr[-4000:]
        return proc.stderr

    table = tmp_path / "cache" / "pythia-70m" / "step143000" / "pile_losses.npy"
    materialize("pile_canonical", "local")
    materialize("model_checkpoint,pile_losses", "local", "--partition", "pythia-70m|step143000")
    local = table.read_bytes()
    log = materialize("pile_losses", "slurm", "--partition", "pythia-70m|step143000")
    job_id = log.split("submitted Slurm job ")[1].split()[0]
    assert table.read_bytes() == local
    state = slurm_cluster.client(["sacct", "-X", "-n", "-P", "-j", job_id, "-o", "State,AllocTRES"]).stdout
    assert state.startswith("COMPLETED|") and "gres/gpu=1" in state, state
