"""quanta_core: the QDG method (Michaud et al. 2023) as a plain library, no Dagster.

Modules, one idea each:
  corpus      stream documents from a Pile-format ``.jsonl.zst`` file
  minipile    build the embedded mini-Pile from text that ships with Python
  tokenizer   Pythia's tokenizer (GPT-NeoX-20B BPE), offline copy included
  canonical   the canonical tokenized corpus and the predictable-token index
  atomic      atomic file writes (temp file + rename)
"""

__version__ = "0.1.0"
