"""quanta_core: the QDG method (Michaud et al. 2023) as a plain library, no Dagster.

Modules, one idea each:
  corpus       stream documents from a Pile-format ``.jsonl.zst`` file
  minipile     build the embedded mini-Pile from text that ships with Python
  tokenizer    Pythia's tokenizer (GPT-NeoX-20B BPE), offline copy included
  canonical    the canonical tokenized corpus and the predictable-token index
  atomic       atomic file writes (temp file + rename)
  paths        the cache directory
  checkpoints  Pythia checkpoints by hub revision (and the demo suite, same path)
  demo_suite   train the small demo GPT-NeoX on the mini-Pile, checkpoints in hub layout
  losses       per-token cross-entropy (nats) aligned to the canonical index
  filters      present-trigram / present-bigram induction flags
  selection    which tokens enter the similarity matrix
  similarity   per-token gradient cosine matrix (exact, projected, reference)
  clustering   spectral clustering, k sweeps, rank-frequency envelope
  token_bytes  token id → raw bytes (byte-level BPE)
  report       the self-contained HTML cluster report
  dynamics     cluster losses across training checkpoints, learned-at steps
"""

__version__ = "0.1.0"
