"""Bytewax peer of the benchmark (runs in the bench-only peers env, not the project's).

    BENCH_BOOTSTRAP=... BENCH_SOURCE=... BENCH_SINK=... python -m bytewax.run peer_bytewax:flow
        [-r RECOVERY_DIR -s 1 -b 0]

The seed's unique-IP resolver as one would write it in Bytewax: JSON values, ``key_on`` the
user, ``stateful_map`` keeping the user's IPs, one row per event to the sink topic (1 worker).
Runs until it is terminated.
"""

from __future__ import annotations

import json
import os
from typing import Any

import bytewax.operators as op  # type: ignore[import-not-found]
from bytewax.connectors.kafka import (  # type: ignore[import-not-found]
    KafkaSink,
    KafkaSinkMessage,
    KafkaSource,
)
from bytewax.dataflow import Dataflow  # type: ignore[import-not-found]


def unique_ips(ips: set[str] | None, event: dict[str, Any]) -> tuple[set[str], int]:
    ips = ips if ips is not None else set()
    ips.add(event["ip_address"])
    return ips, len(ips)


def _row(kv: tuple[str, int]) -> Any:
    user, count = kv
    return KafkaSinkMessage(
        user.encode(), json.dumps({"user.id": user, "user.unique_ip_count": count}).encode()
    )


bootstrap = os.environ["BENCH_BOOTSTRAP"]
flow = Dataflow("unique_ips")
messages = op.input("in", flow, KafkaSource([bootstrap], [os.environ["BENCH_SOURCE"]]))
events = op.map("decode", messages, lambda m: json.loads(m.value))
keyed = op.key_on("user", events, lambda e: e["user_id"])
counts = op.stateful_map("unique_ips", keyed, unique_ips)
op.output("out", op.map("encode", counts, _row), KafkaSink([bootstrap], os.environ["BENCH_SINK"]))
