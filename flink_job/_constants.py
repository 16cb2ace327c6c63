"""Constants shared by several modules of flink_job, each defined once here."""

from __future__ import annotations

# The job's metrics (Flink counters), as the per-record and the batched operators report them
# and the REST API gives them.
COUNTERS = ("eventsIn", "featureRows", "deadLetters", "skipped", "lateArrivals")
