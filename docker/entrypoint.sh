#!/bin/sh
# Migrate to head, then run the imgsim command given as arguments.
set -e
imgsim db upgrade
exec imgsim "$@"
