"""Flink SQL peer of the benchmark: the JVM ceiling on the same Kafka tables (no Python UDF).

    python -m bench.peer_flink_sql BOOTSTRAP SOURCE_TOPIC SINK_TOPIC DELIVERY

The unique-IP count per user as a ``COUNT(DISTINCT ip_address) OVER (PARTITION BY user_id
...)`` over a JSON Kafka table, one row per event to a JSON Kafka sink, on a local MiniCluster
with the project's Flink configuration (parallelism 1, checkpoint every second, hashmap). Runs
until it is terminated.
"""

from __future__ import annotations

import sys
import time
import uuid


def main() -> None:
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.table import StreamTableEnvironment

    from flink_job.config import JobOptions
    from flink_job.job import flink_configuration
    from flink_job.launch import _free_port

    bootstrap, source, sink, delivery = sys.argv[1:5]
    config = flink_configuration(
        JobOptions(job_name=f"bench-sql-{sink}", checkpoint_interval_ms=1000, delivery=delivery)
    )
    config.set_string("rest.port", str(_free_port()))
    config.set_string("rest.bind-address", "127.0.0.1")
    env = StreamExecutionEnvironment.get_execution_environment(config)
    env.set_parallelism(1)
    t_env = StreamTableEnvironment.create(env)
    t_env.execute_sql(
        f"""CREATE TABLE logins (user_id STRING, ip_address STRING, proc AS PROCTIME())
        WITH ('connector' = 'kafka', 'topic' = '{source}',
              'properties.bootstrap.servers' = '{bootstrap}',
              'properties.group.id' = 'sql-{sink}',
              'scan.startup.mode' = 'earliest-offset', 'format' = 'json')"""
    )
    guarantee = "exactly-once" if delivery == "exactly-once" else "at-least-once"
    t_env.execute_sql(
        f"""CREATE TABLE features (`user.id` STRING, `user.unique_ip_count` BIGINT)
        WITH ('connector' = 'kafka', 'topic' = '{sink}',
              'properties.bootstrap.servers' = '{bootstrap}',
              'properties.transaction.timeout.ms' = '600000',
              'sink.delivery-guarantee' = '{guarantee}',
              'sink.transactional-id-prefix' = 'sql-{uuid.uuid4().hex[:8]}',
              'format' = 'json')"""
    )
    t_env.execute_sql(
        """INSERT INTO features SELECT user_id, COUNT(DISTINCT ip_address) OVER (
        PARTITION BY user_id ORDER BY proc ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
        FROM logins"""
    )
    while True:  # the job runs on this process's MiniCluster until the benchmark ends it
        time.sleep(3600)


if __name__ == "__main__":
    main()
