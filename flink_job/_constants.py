"""Constants of flink_job used by more than one module, each defined once here. (Kafka-side
constants, such as the default bootstrap servers, belong to ``connectors/``.)"""

from __future__ import annotations

# The largest Kafka record value a resolver accepts unless its KafkaSource or the job says
# otherwise (1 MiB: Kafka's own default record size limit).
MAX_MESSAGE_BYTES = 1_048_576

# Where a local standalone cluster's REST endpoint listens (the default --jobmanager).
REST_ADDRESS = "localhost:8081"


# The job's metrics (Flink counters), as the per-record and the batched operators report them
# and the REST API gives them.
class Counter:
    """The counters' names."""

    EVENTS_IN = "eventsIn"
    FEATURE_ROWS = "featureRows"
    DEAD_LETTERS = "deadLetters"
    SKIPPED = "skipped"
    LATE_ARRIVALS = "lateArrivals"


COUNTERS = (
    Counter.EVENTS_IN,
    Counter.FEATURE_ROWS,
    Counter.DEAD_LETTERS,
    Counter.SKIPPED,
    Counter.LATE_ARRIVALS,
)

# A job restarts after a failure up to this many times, this long apart (fixed delay).
RESTART_ATTEMPTS = 30
RESTART_DELAY = "2 s"
