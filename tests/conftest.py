"""Shared fixtures: the offline tokenizer, tiny random GPT-NeoX models, a scratch cache.
Shared helpers live in the package tests/support (``support.helpers``)."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from support.helpers import make_tiny_gptneox, write_hub_revision  # noqa: E402


@pytest.fixture(scope="session")
def tokenizer():
    from quanta_core.corpus.tokenizer import load_tokenizer

    return load_tokenizer()


@pytest.fixture
def tiny_gptneox():
    return make_tiny_gptneox()


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """A fresh QUANTA_CACHE_DIR for the test."""
    path = tmp_path / "cache"
    path.mkdir()
    monkeypatch.setenv("QUANTA_CACHE_DIR", str(path))
    monkeypatch.delenv("QUANTA_PILE", raising=False)
    return path


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An HF hub cache (HF_HUB_CACHE, offline) holding a tiny "EleutherAI/pythia-70m" at step143000
    and step142000: ``(hub dir, {step: model}, {step: commit})``."""
    hub = tmp_path / "hf" / "hub"
    hub.mkdir(parents=True)
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    models = {"step143000": make_tiny_gptneox(seed=1), "step142000": make_tiny_gptneox(seed=2)}
    commits = {step: write_hub_revision(hub, "EleutherAI/pythia-70m", step, m) for step, m in models.items()}
    return hub, models, commits


@pytest.fixture
def one_thread():
    """One BLAS/OpenMP thread: tiny matrices only pay overhead for threads on a shared machine."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield
