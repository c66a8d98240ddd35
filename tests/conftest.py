"""Shared fixtures: the offline tokenizer, tiny random GPT-NeoX models, a scratch cache."""

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tokenizer():
    from quanta_core.tokenizer import load_tokenizer

    return load_tokenizer()


def make_tiny_gptneox(vocab_size: int = 512, hidden: int = 32, layers: int = 2, heads: int = 4, seed: int = 0,
                      max_positions: int = 1024, parallel_residual: bool = True):
    """A tiny random GPT-NeoX (Pythia's architecture: rotary 25%, parallel residual unless
    ``parallel_residual=False``), eval mode, fp32."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(seed)
    config = GPTNeoXConfig(
        vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=4 * hidden, max_position_embeddings=max_positions, rotary_pct=0.25,
        use_parallel_residual=parallel_residual, tie_word_embeddings=False,
    )
    model = GPTNeoXForCausalLM(config).eval()
    # random layer-norm weights/biases, so tests would notice a parameter being left out
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


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
