"""Checkpoint resolution through huggingface_hub over a hand-built hub-layout cache, the clear
failures, and the demo suite written and loaded through the same path."""

import json
import math
import time

import numpy as np
import pytest
import torch

from quanta_core.corpus.tokenizer import offline_tokenizer_path
from quanta_core.models.checkpoints import (
    CheckpointError,
    CheckpointNotFound,
    LoadedCheckpoint,
    NotAGPTNeoXModel,
    load_checkpoint,
    resolve_checkpoint,
)

from support.helpers import make_tiny_gptneox, write_hub_revision

REPO = "EleutherAI/pythia-70m"


def _logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0]


def test_loads_pythia_offline_by_revision(hub):
    hub_dir, models, commits = hub
    loaded = load_checkpoint("pythia-70m", "step143000")  # HF_HUB_CACHE + HF_HUB_OFFLINE from the env
    assert isinstance(loaded, LoadedCheckpoint)
    assert (loaded.repo_id, loaded.revision, loaded.commit) == (REPO, "step143000", commits["step143000"])
    assert loaded.snapshot_dir == hub_dir / "models--EleutherAI--pythia-70m" / "snapshots" / commits["step143000"]
    assert type(loaded.model).__name__ == "GPTNeoXForCausalLM"
    assert not loaded.model.training
    assert loaded.dtype == torch.float32 and next(loaded.model.parameters()).dtype == torch.float32
    assert loaded.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert loaded.tokenizer_path == loaded.snapshot_dir / "tokenizer.json"
    ids = [5, 17, 300, 2, 9, 411]
    torch.testing.assert_close(_logits(loaded.model.cpu(), ids), _logits(models["step143000"], ids))


def test_picks_the_snapshot_of_the_asked_revision(hub):
    _, models, commits = hub
    assert commits["step143000"] != commits["step142000"]
    ids = [1, 2, 3, 4, 5, 6, 7]
    for step in ("step142000", "step143000"):
        repo_id, commit, snapshot = resolve_checkpoint("pythia-70m", step)
        assert commit == commits[step] and snapshot.name == commit
        loaded = load_checkpoint("pythia-70m", step, device="cpu")
        torch.testing.assert_close(_logits(loaded.model, ids), _logits(models[step], ids))
    a = load_checkpoint("pythia-70m", "step142000", device="cpu").model
    b = load_checkpoint("pythia-70m", "step143000", device="cpu").model
    assert not torch.allclose(_logits(a, ids), _logits(b, ids))


def test_explicit_cache_dir_overrides_the_environment(hub, monkeypatch, tmp_path):
    hub_dir, _, commits = hub
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    with pytest.raises(CheckpointNotFound):
        resolve_checkpoint("pythia-70m", "step143000")
    assert resolve_checkpoint("pythia-70m", "step143000", cache_dir=hub_dir)[1] == commits["step143000"]
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(hub_dir.parent))  # HF_HOME/hub
    assert resolve_checkpoint("pythia-70m", "step143000")[1] == commits["step143000"]


def test_offline_and_not_cached_fails_fast_naming_model_revision_and_place(hub):
    hub_dir, _, _ = hub
    started = time.perf_counter()
    with pytest.raises(CheckpointNotFound) as err:
        load_checkpoint("pythia-70m", "step1000")
    assert time.perf_counter() - started < 3
    message = str(err.value)
    assert "pythia-70m" in message and "'step1000'" in message and "network access is off" in message
    assert str(hub_dir / "models--EleutherAI--pythia-70m") in message
    assert "step142000, step143000" in message  # what is cached there
    with pytest.raises(CheckpointNotFound, match="nothing cached"):
        load_checkpoint("pythia-160m", "step143000")


def test_no_network_fails_fast_without_retries(hub, monkeypatch):
    """Online but the hub is unreachable (a closed local port): one attempt, a clear error."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")
    started = time.perf_counter()
    with pytest.raises(CheckpointNotFound, match="could not be reached") as err:
        resolve_checkpoint("pythia-70m", "step1000")
    assert time.perf_counter() - started < 5
    assert "pythia-70m" in str(err.value) and "step1000" in str(err.value)
    # a cached revision needs no network at all
    assert resolve_checkpoint("pythia-70m", "step143000")[0] == REPO


def test_missing_revision_of_a_v0_model_explains_the_early_steps(hub):
    hub_dir, _, _ = hub
    write_hub_revision(hub_dir, "EleutherAI/pythia-70m-v0", "step143000", make_tiny_gptneox(seed=3))
    with pytest.raises(CheckpointNotFound) as err:
        resolve_checkpoint("pythia-70m-v0", "step4")
    message = str(err.value)
    assert "pythia-70m-v0" in message and "'step4'" in message and "step143000" in message
    assert "-v0 Pythia models have no early log-spaced checkpoints" in message


def test_a_model_that_is_not_gptneox_is_refused(hub):
    from transformers import GPT2Config, GPT2LMHeadModel

    hub_dir, _, _ = hub
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_embd=16, n_layer=1, n_head=2, n_positions=32))
    write_hub_revision(hub_dir, "someorg/tiny-gpt2", "main", gpt2)
    with pytest.raises(NotAGPTNeoXModel, match="model_type='gpt2'") as err:
        load_checkpoint("someorg/tiny-gpt2", "main")
    assert "someorg/tiny-gpt2" in str(err.value) and "'main'" in str(err.value)


def test_unknown_model_name_and_dtype_are_clear_errors(hub):
    with pytest.raises(CheckpointError, match="unknown model name 'llama-7b'"):
        resolve_checkpoint("llama-7b", "step0")
    with pytest.raises(ValueError, match="unknown dtype 'float8'"):
        load_checkpoint("pythia-70m", "step143000", dtype="float8")


def test_bfloat16_option(hub):
    loaded = load_checkpoint("pythia-70m", "step143000", dtype="bfloat16", device="cpu")
    assert loaded.dtype == torch.bfloat16 and next(loaded.model.parameters()).dtype == torch.bfloat16


# -- the demo suite -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    from quanta_core.corpus.canonical import build_canonical
    from quanta_core.corpus.minipile import minipile_documents
    from quanta_core.corpus.pile import read_pile, write_pile
    from quanta_core.corpus.tokenizer import load_tokenizer

    path = write_pile(tmp_path_factory.mktemp("pile") / "mini.jsonl.zst", minipile_documents(40)[:24])
    return build_canonical(read_pile(path), load_tokenizer())


TINY = dict(hidden_size=16, num_layers=1, num_heads=2, steps=("step0", "step1", "step2", "step4"),
            batch_tokens=512, warmup_steps=1, curve_every_nth_document=3, stats_every_nth_document=1)


def _naive_mean_loss(model, corpus, every_nth: int = 1) -> float:
    """Full-vocabulary cross-entropy of every predictable token of every n-th document (of those
    with ≥ 2 tokens), one document at a time."""
    losses = []
    with torch.no_grad():
        for d in np.flatnonzero(corpus.num_tokens >= 2)[::every_nth]:
            ids = torch.from_numpy(corpus.document(d).astype(np.int64))
            if len(ids) >= 2:
                logits = model(ids[None]).logits[0]
                losses.append(torch.nn.functional.cross_entropy(logits[:-1], ids[1:], reduction="none"))
    return float(torch.cat(losses).mean())


def test_demo_suite_checkpoints_load_through_the_same_path(small_corpus, cache_dir, monkeypatch, tmp_path):
    from quanta_core.models.demo_suite import PADDED_VOCAB, DemoSuiteConfig, existing_demo_suite, train_demo_suite

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-pythia-here"))
    cfg = DemoSuiteConfig(**TINY)
    messages = []
    summary = train_demo_suite(small_corpus, cache_dir / "hub", cfg, seed=0, progress=messages.append)
    assert any("step4" in m for m in messages)
    repo = cache_dir / "hub" / "models--quanta--quanta-demo"
    assert sorted(p.name for p in (repo / "refs").iterdir()) == sorted(TINY["steps"])
    assert not [p for p in (cache_dir / "hub").iterdir() if p.name.startswith(".")]  # no temp left

    models = {}
    for step in TINY["steps"]:
        loaded = load_checkpoint("quanta-demo", step)  # default: <QUANTA_CACHE_DIR>/hub
        assert loaded.repo_id == "quanta/quanta-demo" and loaded.commit == summary["commits"][step]
        assert (repo / "refs" / step).read_text() == loaded.commit
        assert loaded.snapshot_dir.name == loaded.commit
        assert loaded.tokenizer_path.read_bytes() == offline_tokenizer_path().read_bytes()
        config = loaded.model.config
        assert config.vocab_size == PADDED_VOCAB and config.use_parallel_residual
        assert config.rope_parameters["partial_rotary_factor"] == 0.25
        assert json.loads((loaded.snapshot_dir / "config.json").read_text())["rotary_pct"] == 0.25
        models[step] = loaded.model
    assert len(set(summary["commits"].values())) == len(TINY["steps"])

    # the saved 50,304-vocab model's loss, computed naively, is what training reported
    assert math.isclose(_naive_mean_loss(models["step4"], small_corpus), summary["final_mean_loss"], rel_tol=1e-4)
    step0 = _naive_mean_loss(models["step0"], small_corpus, TINY["curve_every_nth_document"])
    assert math.isclose(step0, summary["step0_mean_loss"], rel_tol=1e-4)
    assert math.isclose(step0, summary["curve_mean_loss"]["step0"], rel_tol=1e-4)
    assert summary["final_mean_loss"] < summary["step0_mean_loss"]
    assert abs(summary["step0_mean_loss"] - math.log(PADDED_VOCAB)) < 0.2  # untrained ≈ uniform
    # tokens the corpus never uses share one unembedding row
    used = np.unique(small_corpus.ids)
    absent = np.setdiff1d(np.arange(PADDED_VOCAB), used)
    head = models["step4"].get_output_embeddings().weight.detach()
    assert torch.equal(head[absent], head[absent[:1]].expand(len(absent), -1))
    assert not torch.equal(head[used[0]], head[used[1]])

    # deterministic: the same settings give the same commits; the existing suite is recognised
    again = train_demo_suite(small_corpus, tmp_path / "hub2", cfg, seed=0)
    assert again["commits"] == summary["commits"]
    assert existing_demo_suite(cache_dir / "hub", small_corpus, cfg, seed=0)["commits"] == summary["commits"]
    assert existing_demo_suite(cache_dir / "hub", small_corpus, cfg, seed=1) is None

    with pytest.raises(CheckpointNotFound, match="quanta_demo_suite"):
        load_checkpoint("quanta-demo", "step8")


def test_demo_steps_are_pythia_step_names():
    from quanta_core.models.demo_suite import DEMO_STEPS, DemoSuiteConfig
    from quanta_core.steps import PYTHIA_STEPS

    assert DEMO_STEPS[0] == "step0" and set(DEMO_STEPS) <= set(PYTHIA_STEPS)
    assert DemoSuiteConfig().num_steps == int(DEMO_STEPS[-1][4:])


def test_untrained_demo_suite_names_the_cache_and_where_it_came_from(tmp_path, monkeypatch):
    import quanta_core.environment as environment

    project = tmp_path / "clone"
    project.mkdir()
    (project / ".env").write_text(f"QUANTA_CACHE_DIR={tmp_path / 'dotenv-cache'}\n")
    monkeypatch.setattr(environment, "project_root", lambda: project)
    monkeypatch.delenv("QUANTA_CACHE_DIR", raising=False)
    with pytest.raises(CheckpointNotFound) as raised:
        load_checkpoint("quanta-demo", "step512")
    message = str(raised.value)
    assert f"the cache {tmp_path / 'dotenv-cache'} (from {project / '.env'})" in message
    assert "quanta_demo_suite" in message and "QUANTA_CACHE_DIR=<dir>" in message
