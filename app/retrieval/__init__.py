"""Search: a query becomes vectors (``query``), the database returns a shortlist (``shortlist``),
verification and the match graph re-rank it (``rerank``); ``search.similar`` is the entry point."""
