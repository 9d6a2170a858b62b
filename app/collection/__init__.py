"""Collection-level jobs: fitted over every stored image of a model, kept current as images
are added (``app.ingestion.runner``): PCA-whitening (``+w`` rows), database-side augmentation
(``+dba`` rows) and the match graph (verified neighbours)."""
