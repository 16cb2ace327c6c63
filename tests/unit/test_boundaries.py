"""The package's boundaries: which layer imports which, where constants live, what is public.

- ``connectors/`` (Kafka tables, DDL, client properties, JAAS, admin, jars) is the layer under
  ``flink_job``: it never imports ``flink_job``.
- The user API never loads pyflink (only job building and the runtime do).
- ``flink_job.testing`` hands out public types, not ``_core``'s names.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import connectors
import flink_job
from examples.logins import track_unique_ips
from flink_job import testing
from flink_job.testing import DeadLetter, FeatureRow, RawMessage, replay

ROOT = Path(__file__).resolve().parents[2]
CONNECTORS = Path(connectors.__file__).parent
PACKAGE = Path(flink_job.__file__).parent


def _modules(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "_home" not in p.parts)


def _imported(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth (function-local imports too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def _constants(path: Path) -> list[str]:
    return [
        n.value
        for n in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(n, ast.Constant) and isinstance(n.value, str)
    ]


def test_connectors_never_import_flink_job():
    offenders = {
        str(p.relative_to(ROOT)): sorted(m for m in _imported(p) if m.split(".")[0] == "flink_job")
        for p in _modules(CONNECTORS)
    }
    assert {p: m for p, m in offenders.items() if m} == {}


def test_flink_job_reaches_kafka_only_through_connectors():
    offenders = {
        str(p.relative_to(ROOT)): sorted(m for m in _imported(p) if m.startswith("confluent_kafka"))
        for p in _modules(PACKAGE)
    }
    assert {p: m for p, m in offenders.items() if m} == {}


def test_the_scan_sees_imports_inside_functions(tmp_path):
    """The check above would pass vacuously if it missed the old dodge (an import inside a
    function to break a cycle)."""
    dodge = tmp_path / "dodge.py"
    dodge.write_text("def f():\n    from flink_job.config import SourceSettings\n")
    assert "flink_job.config" in _imported(dodge)


@pytest.mark.parametrize(
    ("value", "home"),
    [
        ("localhost:9092", "connectors/client.py"),  # the default bootstrap servers
        ("org.apache.flink.kafka.shaded.", "connectors/client.py"),  # shaded login modules
        ("ssl.truststore.location", "connectors"),  # Kafka client property names
        ("sasl.jaas.config", "connectors"),
    ],
)
def test_kafka_side_constants_have_one_home_in_connectors(value, home):
    found = sorted(
        str(p.relative_to(ROOT))
        for p in _modules(PACKAGE) + _modules(CONNECTORS)
        if value in _constants(p)
    )
    assert found, f"{value!r} is defined nowhere: the test would be vacuous"
    assert all(f.startswith(home) for f in found), found


def test_the_user_api_never_loads_pyflink():
    """In a fresh interpreter: importing the user API (and replaying a resolver) loads no
    pyflink module."""
    code = (
        "import json, sys\n"
        "import flink_job, flink_job.features, flink_job.streams, flink_job.state\n"
        "import flink_job.sources, flink_job.testing\n"
        "from examples.logins import track_unique_ips\n"
        "flink_job.testing.replay(track_unique_ips, [{'user_id': 'u', 'ip_address': '1'}])\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'pyflink')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == []


def test_the_pyflink_check_sees_pyflink_when_it_is_loaded():
    """The check above is not vacuous: the job builder does load pyflink."""
    code = (
        "import sys\nimport flink_job.job\n"
        "print(any(m.split('.')[0] == 'pyflink' for m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "True"


def test_replay_returns_the_public_testing_types():
    good = {"user_id": "u1", "ip_address": "1.1.1.1"}
    result = replay(track_unique_ips, [good, b"not json"])
    assert [type(r) for r in result.records] == [FeatureRow]
    assert [type(d) for d in result.dead_letters] == [DeadLetter]
    assert isinstance(result.dead_letters[0].message, RawMessage)


def test_dead_letter_header_names_are_public_in_testing():
    result = replay(track_unique_ips, [RawMessage(b"{}", topic="logins", partition=3, offset=7)])
    headers = dict(result.dead_letters[0].headers())
    assert headers[testing.DLQ_RESOLVER] == b"track_unique_ips"
    assert headers[testing.DLQ_SOURCE_TOPIC] == b"logins"
    assert headers[testing.DLQ_SOURCE_PARTITION] == b"3"
    assert headers[testing.DLQ_SOURCE_OFFSET] == b"7"
    assert {testing.DLQ_ERROR_CLASS, testing.DLQ_ERROR_MESSAGE} <= set(headers)
    public = set(testing.__all__)
    assert {"RawMessage", "DeadLetter", "FeatureRow", "HEADER_RESOLVER"} <= public
    assert not any(name.startswith("_") for name in public)
