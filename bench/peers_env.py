"""The bench-only virtualenv of the peer systems (Quix Streams, Bytewax), created on first use.

    python -m bench.peers_env      # create it (needs PyPI), print its python

It lives in ``build/bench-envs/peers`` (never the project's ``.venv``) and holds pinned
versions, installed with pip from the package index the first time the benchmark needs it.
"""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = ROOT / "build" / "bench-envs" / "peers"
PINS = ["quixstreams==3.28.1", "bytewax==0.21.1", "confluent-kafka==2.12.2"]
_STAMP = ENV / "pins.txt"


class PeersEnvUnavailable(RuntimeError):
    """pip could not reach its package index to create the peers environment."""


def python() -> Path:
    return ENV / "bin" / "python"


def ensure() -> Path:
    """The peers env's python; creates the env (pip from the index) when missing or stale."""
    wanted = "\n".join(PINS) + "\n"
    if python().exists() and _STAMP.exists() and _STAMP.read_text() == wanted:
        return python()
    ENV.parent.mkdir(parents=True, exist_ok=True)
    venv.EnvBuilder(with_pip=True, clear=True).create(ENV)
    out = subprocess.run(
        [str(python()), "-m", "pip", "install", "--disable-pip-version-check", "-q", *PINS],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if out.returncode != 0:
        text = out.stdout + out.stderr
        unreachable = (
            "NewConnectionError",
            "Temporary failure in name resolution",
            "Network is unreachable",
            "Max retries exceeded",
            "No matching distribution found",
        )
        if any(u in text for u in unreachable):
            raise PeersEnvUnavailable(f"pip cannot reach its index: {text.strip()[-600:]}")
        raise RuntimeError(f"installing the peers env failed: {text[-3000:]}")
    _STAMP.write_text(wanted)
    return python()


if __name__ == "__main__":
    try:
        print(ensure())
    except PeersEnvUnavailable as e:
        print(e, file=sys.stderr)
        sys.exit(2)
