"""Hash commands, after Valkey's t_hash.c."""
