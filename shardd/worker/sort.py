"""SORT and SORT_RO, after Valkey's sort.c."""
