"""The ingestion job as three seams wired by a runner:

- ``reader``: find files, hash them, plan what each needs, decode in threads -> batches;
- ``embed``: a batch of decoded images -> descriptor rows per model (the backbone runs here);
- ``writer``: one retried transaction per batch (images, vectors, local features, failures),
  and the HNSW index dropped and rebuilt around a first bulk load;
- ``runner``: reader -> embed -> writer, then the collection's upkeep (``+w``, ``+dba`` and
  match-graph rows) so every stored image has them.
"""
