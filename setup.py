"""Packaging hook: a built wheel carries ``conf/`` and the Kafka connector jar (as
``flink_job/_home``, laid out like the checkout), so an installed flink-job works from any
directory without this checkout. Everything else is in pyproject.toml."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class BuildPyWithHome(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the checkout itself
        home = Path(self.build_lib) / "flink_job" / "_home"
        shutil.rmtree(home, ignore_errors=True)
        shutil.copytree(ROOT / "conf", home / "conf")
        # The Kafka connector and the job's own operators (the batched keyed operator).
        # Absent when ./build.sh has not fetched or built them: the installed CLI then says
        # so by name.
        for kind in ("flink", "operators"):
            jars = home / "build" / "jars" / kind
            jars.mkdir(parents=True)
            for jar in sorted((ROOT / "build" / "jars" / kind).glob("*.jar")):
                shutil.copy(jar, jars)


setup(cmdclass={"build_py": BuildPyWithHome})
