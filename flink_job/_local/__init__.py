"""Local infrastructure for development and tests: a Kafka broker and a Flink cluster."""
