"""quanta_core: the QDG method (Michaud et al. 2023) as a plain library, no Dagster.

Laid out by stage; the facts everything uses stay on top:
  steps, presets  Pythia's step names; model families and every per-family default
  environment     reads environment variables: the process's, then the clone's .env
  paths, store    the cache layout; how values are stored (npy/parquet/html, no pickle)
  results         for notebooks: load_clusters(model, step) → a DataFrame from the cache
  atomic          atomic file writes (temp file + rename)
  progress        throttled progress lines (rate, time left)
  host_memory     memory facts without torch: GIB, /proc figures, the host budget, check_fits
  integrity       what a stored file should be (size, content hash); reading it back by name
  corpus/         Pile documents → tokenizer → canonical index → induction filters → selection
  models/         checkpoints by hub revision, the demo suite, per-token losses
  similarity/     per-token gradient cosine similarity (exact, projected, reference; dense or kNN)
  clustering/     spectral clustering (dense and sparse roads), the paper's labels
  learning/       learning times over training and scale, cluster dynamics
  report/         the HTML report, its samples table, the model page, charts, templates
"""

__version__ = "0.1.0"
