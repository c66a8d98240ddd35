"""The clustering stage: candidate quanta from a stored similarity.

  spectral      the exact road: scikit-learn-identical spectral clustering of the dense matrix,
                cluster-count sweeps, the rank-frequency envelope and its slope
  eigensolvers  eigensolvers of the dense spectral embedding (ARPACK, LAPACK eigh)
  sparse        the sparse road: spectral clustering of a kNN graph, for large S
  roads         clustering a stored similarity by the road its files call for
  paper         the paper's published clusters (package data) and comparing with them
"""
