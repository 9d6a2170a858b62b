"""Turning pixels into descriptors, with no database: the model registry and its weights, the
backbones, the method grammar, the embedder (backbone + pooling), local features and spatial
verification, and the pure vector operations (pooling, whitening, DBA, expansion)."""
import os

# TensorFlow's C++ start-up lines (CPU features, oneDNN) are for its developers, not for users;
# set TF_CPP_MIN_LOG_LEVEL yourself to see them. Set here, before anything imports TensorFlow.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
