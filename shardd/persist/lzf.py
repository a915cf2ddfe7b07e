"""LZF as Redis uses it for RDB strings (python-lzf's C liblzf, the library Redis vendors).

`compress` gives exactly what rdbSaveLzfStringObject writes: the output must save at least
4 bytes, else None (the string is stored plain). `decompress` checks the result has the
announced length. Without python-lzf, strings are stored uncompressed and a Python decoder
reads compressed ones.
"""
from __future__ import annotations

try:
    import lzf as _lzf
except ImportError:                            # pragma: no cover - python-lzf is a dependency
    _lzf = None

# LZF never expands a back-reference of 3 bytes to more than 264: a longer claimed output
# is corrupt input, refused before allocating it.
MAX_RATIO = 89


def compress(data: bytes) -> bytes | None:
    """LZF of data if it is at least 4 bytes shorter (Redis tries only strings over 20 bytes)."""
    n = len(data)
    if n <= 4 or _lzf is None:
        return None
    # python-lzf hands liblzf an output buffer one byte longer than max_length; Redis's is
    # len - 4 bytes, and liblzf's conservative end checks make the size matter.
    return _lzf.compress(data, n - 5)


def decompress(data: bytes, length: int) -> bytes:
    """The `length` bytes that data decompresses to; ValueError if it does not."""
    if length > len(data) * MAX_RATIO + 64:
        raise ValueError("LZF length out of proportion to its compressed size")
    if _lzf is None:                           # pragma: no cover
        return decompress_python(data, length)
    try:
        out = _lzf.decompress(data, length)
    except ValueError:
        raise ValueError("invalid LZF data") from None
    if out is None or len(out) != length:
        raise ValueError("LZF data does not decompress to its announced length")
    return out


def decompress_python(data: bytes, length: int) -> bytes:
    """A Python LZF decoder (lzf_d.c's format), for when python-lzf is not installed."""
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        ctrl = data[i]
        i += 1
        if ctrl < 32:                          # a literal run of ctrl + 1 bytes
            end = i + ctrl + 1
            if end > n:
                raise ValueError("invalid LZF data")
            out += data[i:end]
            i = end
        else:                                  # a back-reference
            size = ctrl >> 5
            if size == 7:
                if i >= n:
                    raise ValueError("invalid LZF data")
                size += data[i]
                i += 1
            if i >= n:
                raise ValueError("invalid LZF data")
            ref = len(out) - ((ctrl & 0x1F) << 8) - data[i] - 1
            i += 1
            if ref < 0:
                raise ValueError("invalid LZF data")
            for k in range(ref, ref + size + 2):      # may overlap what it writes
                out.append(out[k])
        if len(out) > length:
            raise ValueError("LZF data does not decompress to its announced length")
    if len(out) != length:
        raise ValueError("LZF data does not decompress to its announced length")
    return bytes(out)
