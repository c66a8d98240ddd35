"""The corpus stage: Pile-format documents in, the canonical token index and the token selection out.

  pile        stream documents from a Pile-format ``.jsonl.zst`` file; write one
  minipile    the embedded mini-Pile, built from text that ships with Python
  tokenizer   Pythia's tokenizer (GPT-NeoX-20B BPE), offline copy included
  canonical   the canonical tokenized corpus and its index over predictable tokens
  filters     present-trigram / present-bigram induction flags
  selection   which tokens enter the similarity matrix
"""
