"""Shard workers: each owns a partition of the keyspace and executes commands on it."""
