"""Set commands, after Valkey's t_set.c."""
