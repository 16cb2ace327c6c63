"""A resolver whose source authenticates with SASL/PLAIN on the local broker's 9094 listener.
The password comes from FLINK_JOB_TEST_SASL_PASSWORD (tests pass right and wrong ones); SSL
passwords from FLINK_JOB_TEST_SSL_CANARY."""

import os

from pydantic import BaseModel

from flink_job.features import Features, features
from flink_job.streams import KafkaSource, stream

source = KafkaSource(
    name="secure",
    bootstrap_server="localhost:9094",
    security_protocol="SASL_PLAINTEXT",
    sasl_mechanism="PLAIN",
    sasl_username="flinkjob",
    sasl_password=os.environ.get("FLINK_JOB_TEST_SASL_PASSWORD", ""),
    # Unused by a SASL_PLAINTEXT connection, but passed through like any setting: canaries.
    ssl_truststore_password=os.environ.get("FLINK_JOB_TEST_SSL_CANARY"),
    ssl_keystore_password=os.environ.get("FLINK_JOB_TEST_SSL_CANARY"),
    ssl_key_password=os.environ.get("FLINK_JOB_TEST_SSL_CANARY"),
)


class Ping(BaseModel):
    id: str


@features
class Device:
    id: str
    seen: bool


@stream(source=source, keys={"id": Device.id})
def mark_seen(event: Ping) -> Features[Device.id, Device.seen]:
    return Device(id=event.id, seen=True)
