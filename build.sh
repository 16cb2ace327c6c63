#!/usr/bin/env bash
# flink-job build and entry points.
#   ./build.sh          set up: .venv (Python 3.11), the package, jars from Maven Central
#   ./build.sh setup    the same. Idempotent, and fast when nothing changed
#   ./build.sh demo     set up, then run the demo (local broker, sample events, MiniCluster)
#   ./build.sh test     set up, then run the test suite (pytest arguments pass through)
#   ./build.sh lint     set up, then ruff + mypy
# Needs: python3.11 (or PYTHON=/path/to/python3.11), Java 17, Maven (mvn).
# Stamps in build/ record what is installed: pip runs again only when pyproject.toml changes,
# Maven only when a jar directory is missing or its pom (or, for connectors/java, a source) changed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
ROOT=$PWD
PYTHON=${PYTHON:-python3.11}
VENV=$ROOT/.venv
BUILD=$ROOT/build
MAVEN_DIR=$ROOT/connectors/maven

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'build.sh: %s\n' "$*" >&2; exit 1; }
hash_of() { sha256sum "$1" | cut -d' ' -f1; }

setup_venv() {
  mkdir -p "$BUILD"
  local stamp=$BUILD/pip.stamp
  if [ ! -x "$VENV/bin/python" ]; then
    command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
    command -v "$PYTHON" >/dev/null 2>&1 || die "Python 3.11 not found (set PYTHON=/path/to/python3.11)"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
      || die "Python 3.11 is required, $PYTHON is $("$PYTHON" --version 2>&1) (set PYTHON=/path/to/python3.11)"
    log "creating .venv with $("$PYTHON" --version 2>&1)"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    rm -f "$stamp"  # a new venv has nothing installed, whatever the stamp says
  fi
  local want; want=$(hash_of pyproject.toml)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || [ ! -x "$VENV/bin/flink-job" ]; then
    log "installing flink-job and its dependencies into .venv (apache-flink is large)"
    "$VENV/bin/python" -m pip install -q -e '.[dev]'
    echo "$want" > "$stamp"
  fi
}

# fetch_jars KIND POM MARKER LABEL: copy POM's dependencies into build/jars/KIND unless that
# directory holds MARKER (a glob) and was fetched with the same POM. Downloads go to a temporary
# directory first, so a failed fetch never leaves a half-filled jar directory behind.
fetch_jars() {
  local kind=$1 pom=$MAVEN_DIR/$2 marker=$3 label=$4
  local dir=$BUILD/jars/$kind
  local want; want=$(hash_of "$pom")
  if [ "$(cat "$dir/.stamp" 2>/dev/null)" = "$want" ] && compgen -G "$dir/$marker" >/dev/null; then
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || die "Maven (mvn) is needed to fetch the jars (e.g. apt-get install maven)"
  log "fetching $label from Maven Central into build/jars/$kind"
  mkdir -p "$BUILD/jars"
  local tmp; tmp=$(mktemp -d "$BUILD/jars/.$kind.XXXXXX")
  # Maven's output goes to a log, shown on failure only (Maven 3.8 -q still prints escape codes).
  local mvnlog=$BUILD/mvn-$kind.log
  if ! mvn -q -B -f "$pom" dependency:copy-dependencies -Djars.dir="$tmp" >"$mvnlog" 2>&1; then
    cat "$mvnlog" >&2
    rm -rf "$tmp"
    die "mvn could not fetch $label (network? Maven output above and in build/mvn-$kind.log)"
  fi
  compgen -G "$tmp/$marker" >/dev/null || { rm -rf "$tmp"; die "$label: $marker missing after mvn"; }
  echo "$want" > "$tmp/.stamp"
  rm -rf "$dir"
  mv "$tmp" "$dir"
}

# build_operators: compile connectors/java (the job's own operators) into build/jars/operators
# unless the jar there was built from the same pom and sources.
build_operators() {
  local src=$ROOT/connectors/java dir=$BUILD/jars/operators
  local want; want=$(cd "$src" && find pom.xml src -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$dir/.stamp" 2>/dev/null)" = "$want" ] && compgen -G "$dir/flink-job-operators-*.jar" >/dev/null; then
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || die "Maven (mvn) is needed to build the operators (e.g. apt-get install maven)"
  log "building the job's operators (connectors/java) into build/jars/operators"
  mkdir -p "$BUILD/jars"
  local tmp; tmp=$(mktemp -d "$BUILD/jars/.operators.XXXXXX")
  local mvnlog=$BUILD/mvn-operators.log
  if ! mvn -q -B -f "$src/pom.xml" package -Doperators.dir="$tmp" -Doperators.target="$BUILD/java-target" >"$mvnlog" 2>&1; then
    cat "$mvnlog" >&2
    rm -rf "$tmp"
    die "mvn could not build connectors/java (Maven output above and in build/mvn-operators.log)"
  fi
  compgen -G "$tmp/flink-job-operators-*.jar" >/dev/null || { rm -rf "$tmp"; die "operators jar missing after mvn"; }
  echo "$want" > "$tmp/.stamp"
  rm -rf "$dir"
  mv "$tmp" "$dir"
}

setup() {
  setup_venv
  fetch_jars flink flink-connector.pom.xml 'flink-sql-connector-kafka-*.jar' "Kafka connector jar"
  fetch_jars kafka kafka-broker.pom.xml 'kafka_2.13-*.jar' "Kafka broker jars"
  build_operators
}

cmd=${1:-setup}
[ $# -gt 0 ] && shift
case "$cmd" in
  setup) setup ;;
  demo) setup; exec "$VENV/bin/flink-job" demo "$@" ;;
  test) setup; exec "$VENV/bin/python" -m pytest "$@" ;;
  lint) setup; "$VENV/bin/ruff" check . && "$VENV/bin/ruff" format --check . && exec "$VENV/bin/mypy" ;;
  -h|--help|help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' ;;
  *) echo "usage: ./build.sh [setup|demo|test|lint] [args...]" >&2; exit 2 ;;
esac
