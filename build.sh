#!/usr/bin/env bash
# flink-job build and entry points.
#   ./build.sh          set up: .venv, the package, jars from Maven Central (idempotent)
#   ./build.sh demo     set up, then run the demo (local broker, sample events, MiniCluster)
#   ./build.sh test     set up, then run the whole test suite (starts what tests need)
#   ./build.sh lint     ruff + mypy
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
ROOT=$PWD
PYTHON=${PYTHON:-python3.11}
VENV=$ROOT/.venv
STAMP_DIR=$ROOT/build
log() { printf '==> %s\n' "$*" >&2; }

setup_venv() {
  if [ ! -x "$VENV/bin/python" ]; then
    command -v "$PYTHON" >/dev/null || PYTHON=python3
    "$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' || {
      echo "build.sh: Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2; exit 1; }
    log "creating .venv with $("$PYTHON" --version)"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
  fi
  mkdir -p "$STAMP_DIR"
  local want; want=$(sha256sum pyproject.toml | cut -d' ' -f1)
  if [ "$(cat "$STAMP_DIR/pip.stamp" 2>/dev/null)" != "$want" ]; then
    log "installing flink-job and its dependencies into .venv (apache-flink is large)"
    "$VENV/bin/python" -m pip install -q -e '.[dev]'
    echo "$want" > "$STAMP_DIR/pip.stamp"
  fi
}

fetch_jars() {  # $1 = kind (flink|kafka), $2 = pom
  local dir=$STAMP_DIR/jars/$1 pom=$ROOT/connectors/maven/$2
  local want; want=$(sha256sum "$pom" | cut -d' ' -f1)
  if [ "$(cat "$dir/.stamp" 2>/dev/null)" != "$want" ]; then
    log "fetching $1 jars from Maven Central ($2)"
    rm -rf "$dir"; mkdir -p "$dir"
    mvn -q -B -f "$pom" dependency:copy-dependencies -DoutputDirectory="$dir" \
      -DincludeScope=runtime >&2
    echo "$want" > "$dir/.stamp"
  fi
}

setup() {
  setup_venv
  fetch_jars flink flink-connector.pom.xml
  fetch_jars kafka kafka-broker.pom.xml
}

cmd=${1:-setup}
[ $# -gt 0 ] && shift
case "$cmd" in
  setup) setup ;;
  demo) setup; exec "$VENV/bin/flink-job" demo "$@" ;;
  test) setup; exec "$VENV/bin/python" -m pytest "$@" ;;
  lint) setup; "$VENV/bin/ruff" check . && "$VENV/bin/ruff" format --check . && "$VENV/bin/mypy" ;;
  *) echo "usage: ./build.sh [setup|demo|test|lint] [args...]" >&2; exit 2 ;;
esac
