#!/bin/sh
# Migrate to head, then run the imgsim command given as arguments (with or without a leading
# "imgsim": `docker compose run --rm web imgsim ingest /data/photos` and `... web ingest ...`).
set -e
imgsim db upgrade
[ "$1" = "imgsim" ] && shift
exec imgsim "$@"
