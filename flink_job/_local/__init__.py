"""Local daemons for development and tests: start and stop a Kafka broker (``kafka``) and a
standalone Flink cluster (``cluster``). What runs on a cluster is :mod:`flink_job._rest`'s."""
