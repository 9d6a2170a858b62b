"""Measuring retrieval: metrics (pure), ``evaluate`` over a labelled folder's stored images,
``compare`` over several models and methods, and the reports a person looks at."""
