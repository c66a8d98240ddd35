"""The model stage: checkpoints by hub revision, the demo suite, and per-token losses.

  checkpoints     Pythia checkpoints by hub revision (and the demo suite, same path)
  demo_suite      the demo suite: train, write checkpoints in hub layout, reuse
  demo_training   the compact-vocabulary GPT-NeoX training behind it
  losses          per-token cross-entropy (nats) aligned to the canonical index
  batching        the one length-bucketing batcher (documents, contexts)
"""
