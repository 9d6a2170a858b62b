"""Rank the stored images against a stored one, by its id (``imgsim search --json`` prints ids).

    .venv/bin/python scripts/examples/search_by_id.py IMAGE_ID [--method global]
"""
import argparse

import app

parser = argparse.ArgumentParser()
parser.add_argument("image_id", type=int)
parser.add_argument("--model", default="efficientnet-lite0")
parser.add_argument("--method", default="verified")
args = parser.parse_args()

for hit in app.similar(args.image_id, args.model, k=5, method=args.method):
    verified = "" if hit.inliers is None else f"  {hit.inliers} inliers"
    print(f"{hit.image_id:>6}  {hit.distance:.4f}{verified}  {hit.path}")
