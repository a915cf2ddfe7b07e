"""HyperLogLog commands in Redis's own representation, after Valkey's hyperloglog.c."""
