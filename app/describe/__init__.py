"""Turning pixels into descriptors, with no database: the model registry and its weights, the
backbones, the method grammar, the embedder (backbone + pooling), local features and spatial
verification, and the pure vector operations (pooling, whitening, DBA, expansion)."""
