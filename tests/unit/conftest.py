"""Unit-test fixtures: pure Python, no Kafka, no Flink."""

import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from flink_job.loader import import_target


@pytest.fixture
def import_source(tmp_path: Path) -> Iterator[Callable[[str, str], ModuleType]]:
    """Write Python source to ``<tmp>/<name>.py`` and import it with ``import_target``.

    The module and its folder are removed from ``sys.modules``/``sys.path`` afterwards.
    """
    saved_path = list(sys.path)
    names: list[str] = []

    def load(name: str, source: str, folder: str = "") -> ModuleType:
        where = tmp_path / folder if folder else tmp_path
        where.mkdir(parents=True, exist_ok=True)
        path = where / f"{name}.py"
        path.write_text(textwrap.dedent(source))
        names.append(name)
        return import_target(str(path))

    yield load
    for name in names:
        sys.modules.pop(name, None)
    sys.path[:] = saved_path
