"""Workers load resolver code by content (issue 15, item 7): a session cluster's interpreter
keeps modules of earlier jobs (thread mode), and the folders their files were shipped to stay
on ``sys.path``; a job must still run exactly the code it was built with."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from flink_job._runtime import ResolverRef
from flink_job.errors import EnvironmentNotReadyError
from flink_job.loader import file_digest, import_target
from flink_job.testing import replay

SOURCE = """
from pydantic import BaseModel
from flink_job.features import Features, features
from flink_job.streams import KafkaSource, stream

class Ev(BaseModel):
    user_id: str

@features
class U:
    id: str
    tag: str

@stream(source=KafkaSource(name="ev"), keys={{"user_id": U.id}})
def tag_user(e: Ev) -> Features[U.id, U.tag]:
    return U(id=e.user_id, tag={tag!r})
"""
NAME = "same_name_resolvers"


@pytest.fixture
def jobs(tmp_path: Path) -> Iterator[dict[str, Path]]:
    """The same module name shipped by two jobs to two folders, with different code."""
    saved = list(sys.path)
    files = {}
    for job in ("old", "new"):
        folder = tmp_path / f"python-files-{job}"
        folder.mkdir()
        files[job] = folder / f"{NAME}.py"
        files[job].write_text(textwrap.dedent(SOURCE.format(tag=job)))
    yield files
    sys.modules.pop(NAME, None)
    sys.path[:] = saved


def tag_of(ref: ResolverRef) -> str:
    rows = replay(ref.load(), [{"user_id": "u1"}]).rows
    return str(rows[0]["u.tag"])


def ref_for(path: Path, client_file: str | None) -> ResolverRef:
    return ResolverRef(module=NAME, file=client_file, name="tag_user", digest=file_digest(path))


def test_a_cached_module_of_the_same_name_from_an_earlier_job_is_not_reused(
    jobs: dict[str, Path],
) -> None:
    # The earlier job ran in this interpreter: its module is cached, its folder on sys.path.
    import_target(str(jobs["old"]))
    assert tag_of(ref_for(jobs["old"], None)) == "old"
    # The new job's file is shipped to another folder; the path it was built from (on the
    # client) does not exist here.
    sys.path.append(str(jobs["new"].parent))
    assert tag_of(ref_for(jobs["new"], "/client/checkout/same_name_resolvers.py")) == "new"
    # And back: each job gets its own code, whichever loaded last.
    assert tag_of(ref_for(jobs["old"], None)) == "old"


def test_the_file_the_job_was_built_from_is_used_when_it_exists_here(
    jobs: dict[str, Path],
) -> None:
    import_target(str(jobs["old"]))
    assert tag_of(ref_for(jobs["new"], str(jobs["new"]))) == "new"


def test_missing_code_is_a_clear_error_naming_the_module_and_the_fix(
    jobs: dict[str, Path], tmp_path: Path
) -> None:
    import_target(str(jobs["old"]))  # a same-named module is cached and on sys.path
    other = tmp_path / "elsewhere.py"
    other.write_text(textwrap.dedent(SOURCE.format(tag="never shipped")))
    ref = ResolverRef(module=NAME, file="/client/x.py", name="tag_user", digest=file_digest(other))
    with pytest.raises(EnvironmentNotReadyError) as e:
        ref.load()
    message = str(e.value)
    assert NAME in message and "not on this worker" in message and "fix:" in message
    assert str(jobs["old"]) in message  # what was found instead
