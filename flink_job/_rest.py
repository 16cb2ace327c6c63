"""A tiny client for Flink's REST API (job status, metrics, exceptions, savepoints)."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from typing import Any

from flink_job.errors import EnvironmentNotReadyError

__all__ = ["FlinkRest"]


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
