"""Input files: finding, reading and decoding images (every failure is one ``ImageError`` line),
and label CSVs."""
