"""Geo commands on sorted sets, after Valkey's geo.c."""
