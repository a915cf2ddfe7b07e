"""List commands, after Valkey's t_list.c."""
