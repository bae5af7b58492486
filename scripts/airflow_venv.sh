#!/usr/bin/env bash
# Create (or reuse) the Airflow virtualenv the DAG test runs in: Airflow's dependencies conflict with
# the job stack, so it never shares .venv. Idempotent: a stamp holds the hash of the pins it was built
# from, and a matching stamp means nothing to do (the second `make test` costs milliseconds).
# usage: scripts/airflow_venv.sh [VENV_DIR] [2|3]   (PYTHON picks the interpreter, default python3; 3.11)
#   2 (default): Airflow 2.10.5, constraints-airflow.txt (the card stack's DAG test, .venv-airflow)
#   3: Airflow 3.3.2 with the standard provider, constraints-airflow3.txt (the current stack's, .venv-airflow3)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${1:-$ROOT/.venv-airflow}"
PYTHON="${PYTHON:-python3}"
case "${2:-2}" in
    2) CONSTRAINTS="$ROOT/constraints-airflow.txt"
       REQUIREMENTS="apache-airflow==2.10.5 apache-airflow-providers-apache-spark==5.3.4" ;;
    3) CONSTRAINTS="$ROOT/constraints-airflow3.txt"
       REQUIREMENTS="apache-airflow==3.3.2 apache-airflow-providers-apache-spark==6.3.4 apache-airflow-providers-standard==1.21.0" ;;
    *) echo "airflow_venv: Airflow major version must be 2 or 3, got '$2'" >&2; exit 2 ;;
esac
WANT="$( (cat "$CONSTRAINTS"; echo "$REQUIREMENTS") | sha256sum | cut -c1-16)"
STAMP="$VENV/.installed"

[ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && exit 0

mkdir -p "$(dirname "$VENV")"
exec 9>"$VENV.lock"
flock 9  # a concurrent caller (make and pytest) waits here, then finds the stamp
[ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && exit 0

version="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [ "$version" != "3.11" ]; then
    echo "airflow_venv: $PYTHON is Python $version; $(basename "$CONSTRAINTS") is resolved for 3.11" >&2
    exit 2
fi
echo "airflow_venv: building $VENV (pins $WANT)" >&2
start=$SECONDS
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
# The job stack's PIP_CONSTRAINT (exported by the Makefile) must not leak into this resolution.
export PIP_CONSTRAINT="$CONSTRAINTS" PIP_DISABLE_PIP_VERSION_CHECK=1
"$VENV/bin/python" -m pip install --quiet "pip==24.3.1"
# shellcheck disable=SC2086
"$VENV/bin/python" -m pip install --quiet $REQUIREMENTS
"$VENV/bin/python" -m pip check >&2
echo "$WANT" > "$STAMP"
echo "airflow_venv: ready in $((SECONDS - start))s" >&2
