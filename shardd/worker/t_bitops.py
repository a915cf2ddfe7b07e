"""Bitmap commands (SETBIT, BITCOUNT, BITFIELD …), after Valkey's bitops.c."""
