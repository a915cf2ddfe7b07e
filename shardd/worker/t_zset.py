"""Sorted set commands, after Valkey's t_zset.c."""
