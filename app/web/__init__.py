"""``imgsim serve``: the HTTP API and the web pages (``server``), and what they show of stored
images (``views``: records, thumbnails, verified correspondences)."""
