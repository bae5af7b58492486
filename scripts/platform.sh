#!/usr/bin/env bash
# The single-host platform for conf/standalone.yaml: PostgreSQL metastore, Spark standalone master and
# workers, Spark Thrift Server. See recsys_spark/platform.py.
# usage: scripts/platform.sh up|down|status [--conf standalone] [--set key=value ...]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
if [ ! -x "$PYTHON" ]; then
    echo "platform: $PYTHON not found; run 'make install' first" >&2
    exit 2
fi
exec "$PYTHON" -m recsys_spark.platform "$@"
