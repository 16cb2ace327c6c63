"""The local broker and the Flink cluster listen on loopback only."""

from __future__ import annotations

import socket
import struct
from pathlib import Path


def _listening() -> dict[int, set[str]]:
    """Port -> local addresses of LISTEN sockets, from /proc/net/tcp and tcp6."""
    out: dict[int, set[str]] = {}
    for name in ("tcp", "tcp6"):
        path = Path("/proc/net") / name
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            local, state = fields[1], fields[3]
            if state != "0A":  # LISTEN
                continue
            addr_hex, port_hex = local.split(":")
            raw = bytes.fromhex(addr_hex)
            if len(raw) == 4:
                addr = socket.inet_ntop(socket.AF_INET, struct.pack("<I", int(addr_hex, 16)))
            else:
                words = struct.unpack("<4I", raw)
                addr = socket.inet_ntop(socket.AF_INET6, struct.pack(">4I", *words))
            out.setdefault(int(port_hex, 16), set()).add(addr)
    return out


def _is_loopback(addr: str) -> bool:
    return (
        addr.startswith("127.")
        or addr in ("::1", "::ffff:127.0.0.1")
        or (addr.startswith("::ffff:127."))
    )


def test_broker_and_cluster_bind_to_loopback(kafka):
    from flink_job._local import cluster

    cluster.start()
    listening = _listening()
    for port in (9092, 9093, 9094, 8081, 6123):
        assert port in listening, f"nothing listens on {port}"
        assert all(_is_loopback(a) for a in listening[port]), (port, listening[port])
