"""Operations on a Flink cluster, local or remote, through its REST endpoint: status, the job
list, counters and failures, refusing a duplicate job, stop with a savepoint, and the remote
environment ``submit`` sends a job through. Starting and stopping local daemons is
:mod:`flink_job._local`'s.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flink_job._constants import REST_ADDRESS
from flink_job.errors import EnvironmentNotReadyError, FlinkJobError

__all__ = [
    "ACTIVE",
    "TERMINAL",
    "FlinkRest",
    "explain",
    "remote_environment",
    "summarize_java_error",
]


# Job states in which a job still holds (or will hold again) its consumer groups and
# transactional ids. A job being cancelled is ending: not counted.
ACTIVE = frozenset(
    {"INITIALIZING", "CREATED", "RUNNING", "FAILING", "RESTARTING", "RECONCILING", "SUSPENDED"}
)
TERMINAL = frozenset({"FINISHED", "FAILED", "CANCELED", "ENDED"})


class FlinkRest:
    """REST calls against ``http://HOST:PORT``."""

    def __init__(self, address: str) -> None:
        self.base = address if address.startswith("http") else f"http://{address}"

    def call(self, method: str, path: str, body: Any = None, timeout: float = 10.0) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.base + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace")[:500]
            raise EnvironmentNotReadyError(
                f"Flink REST {method} {path} failed: HTTP {e.code} {detail}"
            ) from None
        except (urllib.error.URLError, OSError) as e:
            raise EnvironmentNotReadyError(
                f"Flink REST endpoint {self.base} unreachable ({e}); fix: start the cluster with "
                "`flink-job cluster start` or pass --jobmanager HOST:PORT"
            ) from None
        return json.loads(raw) if raw else None

    def get(self, path: str) -> Any:
        return self.call("GET", path)

    def job(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.get(f"/jobs/{job_id}")
        return result

    def jobs(self) -> list[dict[str, Any]]:
        """The cluster's job list (``/jobs/overview``): id, name, state... of every job."""
        result: list[dict[str, Any]] = self.get("/jobs/overview").get("jobs", [])
        return result

    def setting(self, key: str) -> str | None:
        """A key of the JobManager's configuration, if set."""
        for entry in self.get("/jobmanager/config"):
            if entry.get("key") == key:
                return str(entry.get("value"))
        return None

    def refuse_duplicate(self, name: str) -> None:
        """Refuse to start a job named ``name`` while one of that name is active on the
        cluster: both would use the same consumer groups and transactional ids
        (config.job_identity)."""
        for j in self.jobs():
            if j.get("name") == name and j.get("state") in ACTIVE:
                raise FlinkJobError(
                    f"job {name!r} is already {j['state'].lower()} on this cluster (job id "
                    f"{j['jid']}); a second one would share its consumer groups and Kafka "
                    "transactional ids; fix: stop it first, or give this job another --job-name"
                )

    def stop_with_savepoint(self, job_id: str, savepoint_dir: str, timeout: float = 180.0) -> str:
        """Stop ``job_id`` with a canonical savepoint in ``savepoint_dir``; return its path."""
        target = (
            Path(savepoint_dir).resolve().as_uri() if "://" not in savepoint_dir else savepoint_dir
        )
        trigger = self.call(
            "POST",
            f"/jobs/{job_id}/stop",
            {"targetDirectory": target, "drain": False, "formatType": "CANONICAL"},
        )["request-id"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.get(f"/jobs/{job_id}/savepoints/{trigger}")
            if status["status"]["id"] == "COMPLETED":
                op = status.get("operation", {})
                if "failure-cause" in op:
                    cause = op["failure-cause"].get("stack-trace", "")
                    raise EnvironmentNotReadyError(
                        f"stop with savepoint failed: {summarize_java_error(cause)}"
                    )
                return str(op["location"])
            time.sleep(1)
        raise EnvironmentNotReadyError(f"no savepoint within {timeout:.0f}s for job {job_id}")

    def wait_running(
        self,
        job_id: str,
        timeout: float = 90.0,
        settle: float = 2.0,
        first_record: float = 0.0,
    ) -> bool:
        """Return once every task of the job has run for ``settle`` seconds; raise with the
        root cause if it fails first (e.g. a savepoint holding state of a removed resolver).

        Restored state that does not fit the state class fails only at a key's first message,
        which may come well after the tasks switch to RUNNING (the Kafka source still has to
        find its partitions). With ``first_record`` > 0, the settle period starts only once a
        record has crossed the keyed exchange (some vertex reports ``read-records``; the REST
        metrics lag by up to ``metrics.fetcher.update-interval``), waiting up to that many
        seconds for one. Returns whether a record was seen (always True without
        ``first_record``)."""
        deadline = time.monotonic() + timeout
        running_since: float | None = None
        record_deadline: float | None = None
        seen = first_record <= 0
        while time.monotonic() < deadline or (
            record_deadline is not None and time.monotonic() < record_deadline
        ):
            job = self.job(job_id)
            state = str(job.get("state"))
            vertices = job.get("vertices", [])
            if state == "RUNNING" and all(v["status"] == "RUNNING" for v in vertices):
                if not seen:
                    now = time.monotonic()
                    record_deadline = record_deadline or now + first_record
                    if any(v.get("metrics", {}).get("read-records", 0) > 0 for v in vertices):
                        seen, running_since = True, now
                    elif now >= record_deadline:
                        return False
                running_since = running_since or time.monotonic()
                if seen and time.monotonic() - running_since >= settle:
                    self._raise_deterministic(job_id, state)
                    return True
                time.sleep(0.5)
                continue
            running_since = None
            # Region failover restarts failed tasks while the job stays RUNNING: look at the
            # job's exceptions whenever not every task runs.
            if state in ("FAILED", "FAILING", "CANCELED"):
                cause = explain(self.root_cause(job_id) or "see the cluster logs")
                raise FlinkJobError(f"job {job_id} {state.lower()}: {cause}")
            self._raise_deterministic(job_id, state)
            time.sleep(1)
        raise FlinkJobError(f"job {job_id} did not reach RUNNING within {timeout:.0f}s")

    def _raise_deterministic(self, job_id: str, state: str) -> None:
        """Raise if the job has failed (and may be restarting, or have restarted already) for
        a cause no restart can fix: report it now instead of after every restart attempt."""
        cause = self.root_cause(job_id)
        if cause and any(d in cause for d in ("Cannot map", "StateSchemaError")):
            raise FlinkJobError(
                f"job {job_id} failed for a cause no restart can fix (its state now: "
                f"{state.lower()}): {explain(cause)}"
            )

    def counters(self, job_id: str, names: tuple[str, ...]) -> dict[str, int]:
        """Sum user counters (``<subtask>.<operator>.<name>``) over all vertices and subtasks."""
        totals = dict.fromkeys(names, 0)
        for v in self.job(job_id).get("vertices", []):
            base = f"/jobs/{job_id}/vertices/{v['id']}/metrics"
            available = [m["id"] for m in self.get(base)]
            wanted = [m for m in available if m.rsplit(".", 1)[-1] in names]
            if not wanted:
                continue
            for m in self.get(base + "?get=" + ",".join(wanted)):
                name = m["id"].rsplit(".", 1)[-1]
                try:
                    totals[name] += int(float(m["value"]))
                except (TypeError, ValueError):
                    pass
        return totals

    def root_cause(self, job_id: str) -> str | None:
        """The last line that matters of the job's root exception, if it failed."""
        try:
            exc = self.get(f"/jobs/{job_id}/exceptions")
        except EnvironmentNotReadyError:
            return None
        text = (exc or {}).get("root-exception") or ""
        if not text:
            history = (exc or {}).get("exceptionHistory", {}).get("entries", [])
            text = history[0].get("stacktrace", "") if history else ""
        return summarize_java_error(text)


_OURS = re.compile(r"flink_job\.errors\.(\w+Error): (.*)")


def summarize_java_error(text: str) -> str | None:
    """One line from a Java/Python stack trace: our own error if present, else the deepest cause."""
    if not text:
        return None
    ours = _OURS.findall(text)
    if ours:
        kind, msg = ours[-1]
        return f"{kind}: {msg.strip()}"
    causes = re.findall(r"Caused by: (.*)", text)
    first = text.strip().splitlines()[0]
    return (causes[-1] if causes else first).strip()


def explain(cause: str) -> str:
    """Add the fix to JVM failures users meet, in this CLI's terms."""
    if "Cannot map checkpoint/savepoint state" in cause:
        cause = cause.split(" If you want to allow", 1)[0]
        cause += (
            " The savepoint holds state of an operator this job no longer has (a removed or "
            "renamed resolver); fix: add --allow-non-restored-state to drop that state."
        )
    return cause


def remote_environment(
    jobmanager: str,
    config: Any,
    jars: Sequence[Path],
    from_savepoint: str | None = None,
    allow_non_restored_state: bool = False,
) -> Any:
    """A ``StreamExecutionEnvironment`` whose ``execute`` submits to the cluster at
    ``jobmanager`` over REST, uploading ``jars`` and the job's files with the job."""
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.java_gateway import get_gateway

    host, _, port = jobmanager.rpartition(":")
    gateway = get_gateway()
    jvm = gateway.jvm
    jar_files = gateway.new_array(jvm.String, len(jars))
    for i, jar in enumerate(jars):
        jar_files[i] = str(jar)
    settings = jvm.org.apache.flink.runtime.jobgraph.SavepointRestoreSettings
    restore = (
        settings.forPath(from_savepoint, allow_non_restored_state)
        if from_savepoint
        else settings.none()
    )
    # get_execution_environment() would start a local MiniCluster; the remote environment
    # submits through the cluster's REST endpoint and uploads the jars and files with the job.
    # Explicit restore settings: the remote environment ignores
    # execution.state-recovery.ignore-unclaimed-state from the configuration.
    remote = jvm.org.apache.flink.streaming.api.environment.RemoteStreamEnvironment
    local_host, _, local_port = REST_ADDRESS.rpartition(":")
    j_env = remote(
        host or local_host,
        int(port or local_port),
        config._j_configuration,
        jar_files,
        None,
        restore,
    )
    return StreamExecutionEnvironment(j_env)
