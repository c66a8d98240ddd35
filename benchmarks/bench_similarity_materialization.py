"""Benchmark: the WHOLE materialization of ``quanta_similarity`` on the CPU, against the original.

What a user waits for: ``dagster asset materialize -m quanta_assets.definitions --select
quanta_similarity --partition 'pythia-70m|step143000'`` as a subprocess — process start, imports,
loading the code location, the run, loading the checkpoint, the memory probe, the gradients,
the Gram, writing the matrix — timed on the wall clock.

Set-up (not timed; kept in ``--workdir`` and reused): a random pythia-70m-shaped
``GPTNeoXForCausalLM`` (``bench_similarity.pythia_70m_shape``, float32) written as revision
``step143000`` of ``EleutherAI/pythia-70m`` in a hub-layout cache (``HF_HUB_CACHE``, offline);
a synthetic corpus with the Pile's document lengths (``bench_similarity.synthetic_corpus``), its
real induction filters, and a loss table (exponential, mean 2 nats: ~5 % under the 0.1-nats
threshold), stored through the project's IO manager as ``pile_canonical``, ``induction_filters``
and ``pile_losses`` would be. The asset then selects S = ``--tokens`` tokens with the Pythia
defaults (0.1 nats, ``present_trigram``, skip 50; ``num_tokens`` from run config).

The original's cost on the same machine: its ``original_gradient_computations(S)`` gradient
computations (256 at S = 128) × its seconds per gradient, measured with ``method="reference"``
(the original loop: full document, full logits) on ``--reference-tokens`` of the selected tokens
at mid-quantiles of their document lengths, same model, same threads. Generous to the original:
its own start-up and Gram are not counted.

    python benchmarks/bench_similarity_materialization.py               # S = 128, 2 threads
    python benchmarks/bench_similarity_materialization.py --in-process  # Dagster's in-process executor
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

MODEL, STEP, REPO = "pythia-70m", "step143000", "EleutherAI/pythia-70m"
PARTITION = f"{MODEL}|{STEP}"


def paths(workdir: Path) -> dict:
    return {"cache": workdir / "cache", "hub": workdir / "hub", "dagster_home": workdir / "dagster_home"}


def write_checkpoint(hub: Path, seed: int = 0) -> str:
    """The random pythia-70m-shaped model as ``EleutherAI/pythia-70m@step143000`` in ``hub``."""
    from quanta_core.models.checkpoints import write_hub_snapshot

    from bench_similarity import pythia_70m_shape

    model = pythia_70m_shape("cpu", seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        files = {p.name: p.read_bytes() for p in Path(tmp).iterdir() if p.is_file()}
    return write_hub_snapshot(hub / ("models--" + REPO.replace("/", "--")), STEP, files)


def write_upstream(cache: Path, documents: int, seed: int = 0) -> dict:
    """``pile_canonical``, ``induction_filters`` and ``pile_losses`` through the project's IO manager."""
    import dagster as dg

    from quanta_assets.io_manager import QuantaIOManager
    from quanta_assets.partitions import checkpoint_partitions
    from quanta_assets.resources import QuantaCache
    from quanta_core.corpus.filters import induction_filters as compute_filters

    from bench_similarity import synthetic_corpus

    corpus = synthetic_corpus(documents, seed=seed)
    flags = compute_filters(corpus)
    losses = np.random.default_rng(seed + 1).exponential(2.0, corpus.num_predictable).astype(np.float32)

    @dg.asset(name="pile_canonical")
    def pile_canonical() -> dict:
        return corpus.to_arrays()

    @dg.asset(name="induction_filters")
    def induction_filters() -> dict:
        return flags

    @dg.asset(name="pile_losses", partitions_def=checkpoint_partitions)
    def pile_losses() -> np.ndarray:
        return losses

    resources = {"io_manager": QuantaIOManager(cache=QuantaCache(root=str(cache)))}
    dg.materialize([pile_canonical, induction_filters], resources=resources)
    key = dg.MultiPartitionKey({"model": MODEL, "step": STEP})
    dg.materialize([pile_losses], partition_key=key, resources=resources)
    return {"documents": corpus.num_documents, "predictable_tokens": corpus.num_predictable,
            "below_0.1_nats": int((losses < 0.1).sum()), "present_trigram": float(flags["present_trigram"].mean())}


def prepare(workdir: Path, documents: int) -> None:
    p = paths(workdir)
    marker = workdir / "prepared.json"
    if marker.exists():
        print(f"set-up reused: {workdir} ({marker.read_text().strip()})")
        return
    shutil.rmtree(workdir, ignore_errors=True)
    for d in p.values():
        d.mkdir(parents=True)
    shutil.copy(ROOT / "dagster.yaml", p["dagster_home"] / "dagster.yaml")
    commit = write_checkpoint(p["hub"])
    info = {"commit": commit, **write_upstream(p["cache"], documents)}
    marker.write_text(json.dumps(info))
    print(f"set-up written: {workdir} ({info})")


def environment(workdir: Path, threads: int) -> dict:
    p = paths(workdir)
    env = dict(os.environ)
    env.update(QUANTA_CACHE_DIR=str(p["cache"]), HF_HUB_CACHE=str(p["hub"]), HF_HUB_OFFLINE="1",
               DAGSTER_HOME=str(p["dagster_home"]), PYTHONPATH=str(ROOT), OMP_NUM_THREADS=str(threads))
    return env


def materialize(workdir: Path, tokens: int, threads: int, in_process: bool) -> tuple[float, float, float]:
    """Run the real CLI; returns (start time, wall-clock seconds, CPU seconds of it and its children)."""
    shutil.rmtree(paths(workdir)["cache"] / MODEL / STEP / "quanta_similarity", ignore_errors=True)
    config = {"resources": {"similarity_settings": {"config": {"num_tokens": tokens}}}}
    if in_process:
        config["execution"] = {"config": {"in_process": {}}}
    dagster = Path(sys.executable).with_name("dagster")
    cmd = [str(dagster), "asset", "materialize", "-m", "quanta_assets.definitions", "--select", "quanta_similarity",
           "--partition", PARTITION, "--config-json", json.dumps(config)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.time()
    proc = subprocess.run(cmd, check=False, cwd=ROOT, env=environment(workdir, threads), capture_output=True, text=True)
    seconds = time.time() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-5000:] + proc.stderr[-5000:])
        raise SystemExit(f"dagster asset materialize failed (exit {proc.returncode})")
    (workdir / "last_run.log").write_text(proc.stdout + proc.stderr)
    return started, seconds, cpu


def breakdown(workdir: Path, started: float, seconds: float) -> dict:
    """Phases of the last run from its Dagster event log (timestamps) and materialization metadata."""
    os.environ["DAGSTER_HOME"] = str(paths(workdir)["dagster_home"])
    import dagster as dg

    instance = dg.DagsterInstance.get()
    run = instance.get_runs(limit=1)[0]
    events = instance.all_logs(run.run_id)
    at = {}
    for e in events:
        kind = e.dagster_event.event_type_value if e.dagster_event else "LOG"
        at.setdefault(kind, e.timestamp)
        if kind == "LOG" and e.user_message.startswith("loading "):
            at.setdefault("model_load_start", e.timestamp)
        if kind == "LOG" and e.user_message.startswith("loaded "):
            at.setdefault("model_load_end", e.timestamp)
    meta = next(e.dagster_event.event_specific_data.materialization.metadata for e in events
                if e.dagster_event and e.dagster_event.event_type_value == "ASSET_MATERIALIZATION")
    value = {k: getattr(v, "value", v) for k, v in meta.items()}
    step_start = at["STEP_START"]
    phases = {
        "start-up (process, imports, code location, run, step process)": step_start - started,
        "inputs + selection": at["model_load_start"] - step_start,
        "model load": at["model_load_end"] - at["model_load_start"],
        "similarity_matrix": float(value["seconds"]),
        "  of which memory probe + set-up + bookkeeping": float(value.get("probe_seconds", float("nan"))),
        "  of which gradients": float(value["gradient_seconds"]),
        "  of which Gram": float(value["gram_seconds"]),
        "write + metadata (output handled)": at.get("HANDLED_OUTPUT", at["STEP_SUCCESS"]) - at["STEP_OUTPUT"],
        "after the step (run end, process exit)": started + seconds - at["STEP_SUCCESS"],
    }
    phases["rest of the step"] = (at["STEP_OUTPUT"] - at["model_load_end"]) - phases["similarity_matrix"]
    return {"phases": phases, "metadata": value}


def original_cost(workdir: Path, tokens: int, reference_tokens: int, threads: int) -> tuple[float, float, int, float]:
    """(wall and CPU seconds per gradient of the original loop, its gradient count at S, the
    mean document length of the S tokens)."""
    import torch

    from quanta_core.corpus.canonical import CanonicalCorpus
    from quanta_core.models.checkpoints import load_checkpoint
    from quanta_core.similarity import original_gradient_computations, similarity_matrix

    from bench_similarity import stratified

    torch.set_num_threads(threads)
    p = paths(workdir)
    stored = p["cache"] / MODEL / STEP / "quanta_similarity"
    indices = np.load(stored / "indices.npy")
    arrays = {k: np.load(p["cache"] / "corpus" / "pile_canonical" / f"{k}.npy") for k in ("ids", "offsets")}
    import pandas as pd

    arrays["documents"] = pd.read_parquet(p["cache"] / "corpus" / "pile_canonical" / "documents.parquet")
    corpus = CanonicalCorpus.from_arrays(arrays)
    model = load_checkpoint(MODEL, STEP, hub_cache_dir=p["hub"], device="cpu", offline=True).model
    docs = np.searchsorted(corpus.starts, indices, side="right") - 1
    doc_len = corpus.num_tokens[docs]
    subset = stratified(indices, doc_len, reference_tokens)
    cpu = time.process_time()
    ref = similarity_matrix(model, corpus, subset, method="reference")
    cpu = time.process_time() - cpu
    count = ref.gradient_computations
    return ref.gradient_seconds / count, cpu / count, original_gradient_computations(tokens), doc_len.mean()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "quanta-bench-materialization"))
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--documents", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--in-process", action="store_true", help="Dagster's in-process executor (run config)")
    ap.add_argument("--reference-tokens", type=int, default=16, help="tokens the original loop is timed on")
    ap.add_argument("--skip-reference", action="store_true")
    ap.add_argument("--repeat", type=int, default=1, help="materializations (the fastest is reported)")
    args = ap.parse_args()
    workdir = Path(args.workdir)
    prepare(workdir, args.documents)
    runs = []
    for _ in range(args.repeat):
        started, seconds, cpu = materialize(workdir, args.tokens, args.threads, args.in_process)
        runs.append((seconds, cpu, breakdown(workdir, started, seconds)))
    seconds, cpu, report = min(runs, key=lambda r: r[0])
    print(f"\nquanta_similarity, exact, S = {args.tokens}, {args.threads} threads, "
          f"{'in-process' if args.in_process else 'default'} executor: {seconds:.1f} s wall, {cpu:.1f} CPU-s "
          f"(runs: {', '.join(f'{s:.1f}' for s, _, _ in runs)}; load average {os.getloadavg()[0]:.1f})")
    meta = report["metadata"]
    print(f"  plan: resident {meta['resident_tokens']} {meta['resident_dtype']} × {meta['blocks']} blocks, "
          f"{meta['gradient_computations']} gradient computations, batch {meta['batch_size']}")
    for name, value in report["phases"].items():
        print(f"  {name:<62} {value:7.2f} s")
    if args.skip_reference:
        return
    per_grad, cpu_per_grad, count, doc_len = original_cost(workdir, args.tokens, args.reference_tokens, args.threads)
    original, original_cpu = per_grad * count, cpu_per_grad * count
    print(f"\noriginal loop: {per_grad:.2f} s ({cpu_per_grad:.2f} CPU-s) per gradient (measured on "
          f"{args.reference_tokens} tokens; mean document of all S {doc_len:.0f} tokens) × {count} gradient "
          f"computations = {original:.0f} s ({original_cpu:.0f} CPU-s); load average {os.getloadavg()[0]:.1f}")
    print(f"ratio (original / whole materialization): {original / seconds:.1f}× wall, "
          f"{original_cpu / cpu:.1f}× CPU time")


if __name__ == "__main__":
    main()
