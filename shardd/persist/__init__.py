"""Per-worker persistence (RDB, AOF)."""

# A worker's exit codes the supervisor acts on.
LOAD_FAILED_EXIT = 3      # its data could not be loaded: the start stops (never half a keyspace)
SAVE_FAILED_EXIT = 4      # its snapshot on the way out failed: the shard map is left as it was
