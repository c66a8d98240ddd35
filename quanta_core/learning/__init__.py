"""When tokens and quanta are learned: fits of per-token loss over training and model size.

  fit        a vectorized sigmoid fit of many loss trajectories at once
  times      token learning times over the checkpoints of a model
  spectrum   the learning-time spectrum and how well it reconstructs the mean loss curve
  clusters   are quanta learned at once? (cluster spread against random groups)
  scale      token learning across model scale (loss against parameter count)
  dynamics   each cluster's loss over training, and its learned-at step
"""
