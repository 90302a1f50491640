"""CRC-16/CCITT-FALSE, the checksum of edgebp binary frames.

Parameters of the algorithm (Rocksoft model): width 16, polynomial 0x1021, init 0xFFFF,
no input or output reflection, xorout 0x0000, check value ``CRC("123456789") = 0x29B1``.
It is the CRC that ``binascii.crc_hqx(data, 0xFFFF)`` computes, which this module uses for
single frames (C speed). For a block of equal-length frames, :func:`crc16_ccitt_false_rows`
runs the table-driven form column by column over all frames at once (numpy), which is what
the binary decoder's fast path uses.

Because the CRC is transmitted most-significant byte first and xorout is 0, the CRC of a
frame body *followed by its transmitted CRC* is 0 ("residue 0"): a receiver can check a
frame with one call.

Examples
--------
>>> hex(crc16_ccitt_false(b"123456789"))
'0x29b1'
>>> body = b"\\x53\\x06\\x01\\x00abcdef"
>>> crc = crc16_ccitt_false(body)
>>> crc16_ccitt_false(body + crc.to_bytes(2, "big"))
0
"""

from __future__ import annotations

import binascii

import numpy as np

POLY = 0x1021
INIT = 0xFFFF
CHECK_VALUE = 0x29B1


def _table() -> np.ndarray:
    table = np.zeros(256, dtype=np.int32)
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ POLY) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
        table[byte] = crc
    return table


#: Table of the MSB-first (non-reflected) CRC-16 with polynomial 0x1021.
CRC16_TABLE = _table()


def crc16_ccitt_false(data: bytes | bytearray | memoryview, init: int = INIT) -> int:
    """CRC-16/CCITT-FALSE of ``data``.

    Parameters
    ----------
    data : bytes-like
        The bytes to check.
    init : int
        Start value (0xFFFF for CCITT-FALSE); pass a previous result to continue a CRC.

    Returns
    -------
    int
        The CRC, 0..0xFFFF.

    Examples
    --------
    >>> f"{crc16_ccitt_false(b'123456789'):04X}"
    '29B1'
    >>> crc16_ccitt_false(b'6789', init=crc16_ccitt_false(b'12345')) == 0x29B1
    True
    """
    return binascii.crc_hqx(bytes(data), init)


def crc16_ccitt_false_bitwise(data: bytes | bytearray, init: int = INIT) -> int:
    """The textbook bit-by-bit form of the same CRC (slow; the definition, used in tests).

    Examples
    --------
    >>> crc16_ccitt_false_bitwise(b"123456789") == CHECK_VALUE
    True
    """
    crc = init
    for byte in bytes(data):
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ POLY) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def crc16_ccitt_false_rows(rows: np.ndarray, init: int = INIT) -> np.ndarray:
    """CRC of every row of a 2-D ``uint8`` array (one frame body per row), vectorised.

    Parameters
    ----------
    rows : np.ndarray
        Shape ``(n_frames, n_bytes)``, dtype ``uint8``.
    init : int
        Start value.

    Returns
    -------
    np.ndarray
        ``int32`` array of shape ``(n_frames,)``, each 0..0xFFFF.

    Examples
    --------
    >>> rows = np.frombuffer(b"123456789123456789", dtype=np.uint8).reshape(2, 9)
    >>> [hex(c) for c in crc16_ccitt_false_rows(rows)]
    ['0x29b1', '0x29b1']
    """
    rows = np.asarray(rows)
    if rows.ndim != 2 or rows.dtype != np.uint8:
        raise ValueError(f"rows must be a 2-D uint8 array, got {rows.dtype} with shape {rows.shape}")
    crc = np.full(rows.shape[0], init, dtype=np.int32)
    for j in range(rows.shape[1]):
        crc = ((crc << 8) & 0xFFFF) ^ CRC16_TABLE[(crc >> 8) ^ rows[:, j]]
    return crc
