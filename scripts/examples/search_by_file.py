"""Ingest a folder, then rank the stored images against one photo file.

    .venv/bin/python scripts/examples/search_by_file.py PHOTOS_FOLDER PHOTO [--method verified]
"""
import argparse

import app

parser = argparse.ArgumentParser()
parser.add_argument("folder")
parser.add_argument("photo")
parser.add_argument("--model", default="efficientnet-lite0")
parser.add_argument("--method", default="verified")
args = parser.parse_args()

report = app.ingest(args.folder, args.model, args.method)
print(f"stored: {report.new_images} new, {report.skipped} already there, {len(report.failed)} failed")
for hit in app.similar(args.photo, args.model, k=5, method=args.method):
    print(f"{hit.distance:.4f}  {hit.path}")
