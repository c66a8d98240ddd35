"""quanta_core: the QDG method (Michaud et al. 2023) as a plain library, no Dagster.

Modules, one idea each:
  steps, presets  Pythia's step names; model families and every per-family default
  paths, store    the cache layout; how values are stored (npy/parquet/html, atomic, no pickle)
  atomic          atomic file writes (temp file + rename)
  batching        the one length-bucketing batcher
  progress        throttled progress lines (rate, time left)
  corpus          stream documents from a Pile-format ``.jsonl.zst`` file
  minipile        build the embedded mini-Pile from text that ships with Python
  tokenizer       Pythia's tokenizer (GPT-NeoX-20B BPE), offline copy included
  canonical       the canonical tokenized corpus and the predictable-token index
  checkpoints     Pythia checkpoints by hub revision (and the demo suite, same path)
  demo_suite      the demo suite: train, write checkpoints in hub layout, reuse
  demo_training   the compact-vocabulary GPT-NeoX training behind it
  losses          per-token cross-entropy (nats) aligned to the canonical index
  filters         present-trigram / present-bigram induction flags
  selection       which tokens enter the similarity matrix
  similarity/     per-token gradient cosine matrix (exact, projected, reference)
  clustering      spectral clustering, k sweeps, rank-frequency envelope
  token_bytes     token id → raw bytes (byte-level BPE)
  html, charts    the one jinja2 environment; every SVG chart
  report          the self-contained HTML cluster report
  dynamics        cluster losses across training checkpoints, learned-at steps
  dynamics_page   the model-level page and the report's training-dynamics extras
"""

__version__ = "0.1.0"
