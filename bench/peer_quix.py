"""Quix Streams peer of the benchmark (runs in the bench-only peers env, not the project's).

    python bench/peer_quix.py BOOTSTRAP SOURCE_TOPIC SINK_TOPIC GUARANTEE STATE_DIR

The seed's unique-IP resolver as one would write it in Quix Streams: JSON values, ``group_by``
on the user (a repartition through the broker, as the project's ``key_by``), a stateful
``apply`` keeping the user's IPs, one row per event to the sink topic. Commits every second
(the project's checkpoint interval). Runs until it is terminated.
"""

from __future__ import annotations

import sys
from typing import Any

from quixstreams import Application, State  # type: ignore[import-not-found]


def unique_ips(event: dict[str, Any], state: State) -> dict[str, Any]:
    ips = state.get("ips") or []
    ip = event["ip_address"]
    if ip not in ips:
        ips.append(ip)
        state.set("ips", ips)
    return {"user.id": event["user_id"], "user.unique_ip_count": len(ips)}


def main() -> None:
    bootstrap, source, sink, guarantee, state_dir = sys.argv[1:6]
    app = Application(
        broker_address=bootstrap,
        consumer_group=f"quix-{sink}",
        auto_offset_reset="earliest",
        processing_guarantee=guarantee,
        commit_interval=1.0,
        state_dir=state_dir,
        loglevel="WARNING",
    )
    sdf = app.dataframe(app.topic(source, value_deserializer="json"))
    sdf = sdf.group_by("user_id")
    sdf = sdf.apply(unique_ips, stateful=True)
    sdf.to_topic(app.topic(sink, value_serializer="json"))
    app.run()


if __name__ == "__main__":
    main()
