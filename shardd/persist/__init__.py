"""Per-worker persistence (RDB, AOF)."""
