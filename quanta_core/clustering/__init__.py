"""The clustering stage: candidate quanta from a stored similarity.

  spectral      the exact road: scikit-learn-identical spectral clustering of the dense matrix,
                cluster-count sweeps, the rank-frequency envelope and its slope
  eigensolvers  eigensolvers of the dense spectral embedding (ARPACK, LAPACK eigh)
  sparse        the sparse road: spectral clustering of a kNN graph, for large S
  roads         clustering a stored similarity by the road its files call for
  paper         the paper's published clusters (package data) and comparing with them
  stability     which clusters are real: clusterboot stability per cluster (seeds / subsample)
  coherence     mean within-cluster cosine and its z-score against random groups of the same size
  sweep         the paper's cluster counts from one embedding, the envelope and its slope
"""
