"""Find resolvers: import a module (dotted name) or a Python file and collect its resolvers."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

from flink_job.config import JobOptions, SourceSettings, check_source_names, resolve_source
from flink_job.errors import ConfigError, EnvironmentNotReadyError, FlinkJobError
from flink_job.streams import Resolver, runs_in

__all__ = [
    "Loaded",
    "collect_resolvers",
    "file_digest",
    "for_environment",
    "import_by_content",
    "import_target",
    "load",
    "load_resolvers",
]


_IMPORT_LOCK = threading.RLock()


def file_digest(path: Path) -> str:
    """A digest of a file's content."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def import_target(target: str) -> ModuleType:
    """Import ``target``: a path to a ``.py`` file, or a dotted module name.

    Thread-safe: in Flink's thread mode several operators open in one interpreter at once.
    """
    with _IMPORT_LOCK:
        return _import_target(target)


def _import_target(target: str) -> ModuleType:
    path = Path(target)
    if target.endswith(".py") or path.is_file():
        if not path.is_file():
            raise ConfigError(f"no such file: {target}; fix: pass a .py file or a module name")
        path = path.resolve()
        # Importable by its stem (the file's folder goes on sys.path) so that workers and
        # pickles name it the same way everywhere.
        folder = str(path.parent)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        return _exec_file(path.stem, path, file_digest(path))
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as e:
        if e.name and target.startswith(e.name):
            raise ConfigError(
                f"cannot import {target!r}: no module named {e.name!r}; fix: pass a .py file "
                "path, or run from the folder that holds the module (or install it)."
            ) from None
        raise


def _exec_file(name: str, path: Path, digest: str) -> ModuleType:
    """Module ``name`` from ``path`` (content ``digest``): the cached module only if it was
    loaded from the very same content. A long-lived TaskManager interpreter (thread mode) keeps
    modules of earlier jobs, and a resubmitted job must run its new code."""
    existing = sys.modules.get(name)
    if existing is not None and getattr(existing, "__flink_job_digest__", None) == digest:
        return existing
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    module.__flink_job_digest__ = digest  # type: ignore[attr-defined]
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def import_by_content(name: str, file: str | None, digest: str) -> ModuleType:
    """Import module ``name`` from a source file whose content has ``digest``.

    How workers load resolver code: never by a cached module name (a session cluster's
    TaskManager keeps modules of earlier jobs, and the folders their files were shipped to stay
    on ``sys.path``), always from a file with the job's content: ``file`` (the path where the
    job was built) if it exists here, else the module's file shipped with the job (a
    ``<name>.py``, or ``name``'s path in a package, on ``sys.path``).

    Raises:
        EnvironmentNotReadyError: No file with that content is here.
    """
    with _IMPORT_LOCK:
        candidates = [Path(file)] if file else []
        parts = name.split(".")
        tails = [Path(*parts[:-1], parts[-1] + ".py"), Path(*parts, "__init__.py")]
        candidates += [Path(p or ".") / tail for p in sys.path for tail in tails]
        seen: list[str] = []
        for path in candidates:
            if not path.is_file() or str(path) in seen:
                continue
            seen.append(str(path))
            if file_digest(path) == digest:
                if len(parts) > 1:
                    importlib.import_module(".".join(parts[:-1]))  # the parent packages
                # Not resolved: Flink links shipped files to blobs named without ".py".
                return _exec_file(name, path.absolute(), digest)
        raise EnvironmentNotReadyError(
            f"the code of module {name!r} this job was built with (sha256 {digest[:12]}) is "
            f"not on this worker (files of that name here: {', '.join(seen) or 'none'}); "
            "fix: ship it with the job (flink-job submit and flink-job package do)"
        )


def collect_resolvers(obj: Any) -> list[Resolver[Any, Any]]:
    """The resolvers in a module, a resolver, or an iterable of either; names must be unique."""
    found: list[Resolver[Any, Any]] = []
    if isinstance(obj, Resolver):
        found.append(obj)
    elif isinstance(obj, ModuleType):
        found.extend(v for v in vars(obj).values() if isinstance(v, Resolver))
    else:
        try:
            items = list(obj)
        except TypeError:
            raise ConfigError(
                f"expected a resolver or a module of resolvers; got {obj!r}"
            ) from None
        for item in items:
            found.extend(collect_resolvers(item))
    unique: dict[str, Resolver[Any, Any]] = {}
    for r in found:
        other = unique.get(r.name)
        if other is not None and other is not r:
            raise ConfigError(
                f"two resolvers are named {r.name!r}; operator uids and state derive from the "
                "name, so it must be unique. Fix: rename one, or pass name= to @stream.",
                resolver=r.name,
            )
        unique[r.name] = r
    return list(unique.values())


def load_resolvers(target: str) -> list[Resolver[Any, Any]]:
    """Import ``target`` and return its resolvers; an error if it has none."""
    module = import_target(target)
    resolvers = collect_resolvers(module)
    if not resolvers:
        raise FlinkJobError(
            f"{target} defines no stream resolvers; fix: decorate functions with @stream(...)"
        )
    return resolvers


@dataclasses.dataclass(frozen=True)
class Loaded:
    """A job's target loaded once: its module, the resolvers that run in the job's
    environment, and each one's source resolved against the configuration. What
    ``launch.prepare`` checks and ``job.build_job`` compiles, without loading again."""

    target: str
    module: ModuleType
    resolvers: list[Resolver[Any, Any]]
    sources: dict[str, SourceSettings]  # resolver name -> its source

    @property
    def file(self) -> str | None:
        """The module's file when the target is a file (it travels with the job), else None."""
        if not (self.target.endswith(".py") or Path(self.target).is_file()):
            return None
        return getattr(self.module, "__file__", None)


def load(
    target: str, options: JobOptions, resolvers: list[Resolver[Any, Any]] | None = None
) -> Loaded:
    """Import ``target`` (once), choose its resolvers for ``options.environment`` (or the
    given ``resolvers`` of it) and resolve their sources; an error if none runs."""
    module = import_target(target)
    found = resolvers if resolvers is not None else collect_resolvers(module)
    chosen = for_environment(found, options.environment)
    if not chosen:
        raise ConfigError(
            f"{target} defines no stream resolvers; fix: decorate functions with @stream(...)"
        )
    check_source_names({r.name: r.source for r in chosen})
    sources = {r.name: resolve_source(r.source, options) for r in chosen}
    return Loaded(target, module, chosen, sources)


def for_environment(
    resolvers: list[Resolver[Any, Any]], environment: str | None
) -> list[Resolver[Any, Any]]:
    """The resolvers that run in ``environment`` (``--environment``): those declared without
    ``environment=``, and those naming it. An error if that leaves none."""
    chosen = [r for r in resolvers if runs_in(r, environment)]
    if resolvers and not chosen:
        where = f"environment {environment!r}" if environment else "no --environment"
        raise ConfigError(
            f"no resolver runs in {where}: "
            + "; ".join(
                f"{r.name!r} runs only in {', '.join(r.environments or ())}" for r in resolvers
            )
            + "; fix: pass --environment with one of those names",
            field="environment",
        )
    return chosen
