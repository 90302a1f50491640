"""Byte sources for the stream decoder: a file, a growing file (``tail -f``), a serial port, stdin.

Every source is a generator of ``bytes`` chunks (never empty) and can be handed straight to
:func:`edgebp.runtime.protocol.decode_stream`. Errors name the file or port.

Examples
--------
>>> import tempfile, os
>>> from edgebp.runtime.protocol import decode_stream
>>> path = os.path.join(tempfile.mkdtemp(), "log.txt")
>>> _ = open(path, "wb").write(b"red=1, ir=2\\nred=3, ir=4\\n")
>>> blocks = decode_stream(iter_file(path, chunk=7), fs=50, channel_map={"ir": "ppg"})
>>> [b.values.ravel().tolist() for b in blocks]
[[2.0], [4.0]]
"""

from __future__ import annotations

import logging
import os
import stat
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

log = logging.getLogger(__name__)

Stop = threading.Event | Callable[[], bool] | None


class SourceError(OSError, ValueError):
    """A byte source that cannot be opened or read; the message names the file or port.

    Both an :class:`OSError` (it is one) and a :class:`ValueError` (so the command line
    reports it as a one-line error).
    """


def _stopped(stop: Stop) -> bool:
    if stop is None:
        return False
    if isinstance(stop, threading.Event):
        return stop.is_set()
    return bool(stop())


def _wait(stop: Stop, seconds: float) -> None:
    if isinstance(stop, threading.Event):
        stop.wait(seconds)
    else:
        time.sleep(seconds)


def _open_file(path: Path):
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise SourceError(f"{path}: is a directory, not a log file") from None
    except PermissionError:
        raise SourceError(f"{path}: permission denied") from None


def iter_file(path: str | os.PathLike, chunk: int = 65536) -> Iterator[bytes]:
    """Read a file in chunks of ``chunk`` bytes.

    Parameters
    ----------
    path : str or PathLike
        The log file.
    chunk : int
        Bytes per chunk (> 0).

    Raises
    ------
    FileNotFoundError, SourceError
        At the call, naming the file.

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "a.bin")
    >>> _ = open(p, "wb").write(bytes(10))
    >>> [len(c) for c in iter_file(p, chunk=4)]
    [4, 4, 2]
    """
    if chunk <= 0:
        raise ValueError(f"chunk must be a positive number of bytes, got {chunk}")
    path = Path(path)
    _open_file(path).close()  # errors now, naming the file, not at the first next()
    return _read_file(path, chunk)


def _read_file(path: Path, chunk: int) -> Iterator[bytes]:
    with _open_file(path) as f:
        while True:
            data = f.read(chunk)
            if not data:
                return
            yield data


def iter_follow(path: str | os.PathLike, poll_s: float = 0.05, stop: Stop = None,
                idle_timeout_s: float | None = None, chunk: int = 65536) -> Iterator[bytes]:
    """Follow a growing file like ``tail -f`` (from its start), surviving truncation and rotation.

    When the file shrinks below what was read (truncated, e.g. ``> log``) it is read again
    from the start; when the path names a new file (rotated, e.g. ``mv log log.1`` and a new
    ``log``) the old one is read to its end and the new one from its start. Both are logged.

    Parameters
    ----------
    path : str or PathLike
        The file; it must exist when following starts.
    poll_s : float
        Seconds between checks when there is nothing new.
    stop : threading.Event or callable, optional
        Checked whenever no new data is available; once set (or returning True) the
        generator ends. Everything written before ``stop`` was set is delivered first.
    idle_timeout_s : float, optional
        End after this many seconds without new data.
    chunk : int
        Largest chunk yielded.

    Notes
    -----
    Truncation is seen as the size dropping below the read position; if the file is
    truncated and then regrows past that position between two polls, the restart is missed
    (as with ``tail -f``).

    Examples
    --------
    >>> import tempfile, os, threading
    >>> p = os.path.join(tempfile.mkdtemp(), "grow.log")
    >>> _ = open(p, "wb").write(b"abc")
    >>> b"".join(iter_follow(p, poll_s=0.01, idle_timeout_s=0.05))
    b'abc'
    """
    if poll_s <= 0:
        raise ValueError(f"poll_s must be positive, got {poll_s}")
    path = Path(path)
    _open_file(path).close()  # errors now, naming the file
    return _follow(path, poll_s, stop, idle_timeout_s, chunk)


def _follow(path: Path, poll_s: float, stop: Stop, idle_timeout_s: float | None, chunk: int) -> Iterator[bytes]:
    f = _open_file(path)
    try:
        st = os.fstat(f.fileno())
        ident = (st.st_dev, st.st_ino)
        pos = 0
        last_data = time.monotonic()
        while True:
            data = f.read(chunk)
            if data:
                pos += len(data)
                last_data = time.monotonic()
                yield data
                continue
            try:
                st_path = os.stat(path)
            except FileNotFoundError:
                st_path = None  # moved away; a new file may appear
            if st_path is not None and (st_path.st_dev, st_path.st_ino) != ident:
                log.warning("%s: file was replaced (rotated); reading the new file from its start", path)
                f.close()
                f = _open_file(path)
                st = os.fstat(f.fileno())
                ident = (st.st_dev, st.st_ino)
                pos = 0
                continue
            if os.fstat(f.fileno()).st_size < pos:
                log.warning("%s: file was truncated (size < %d bytes read); reading again from its start", path, pos)
                f.seek(0)
                pos = 0
                continue
            if _stopped(stop):
                return
            if idle_timeout_s is not None and time.monotonic() - last_data >= idle_timeout_s:
                log.info("%s: no new data for %.3g s; stopping", path, idle_timeout_s)
                return
            _wait(stop, poll_s)
    finally:
        f.close()


def iter_serial(port: str, baud: int = 115200, timeout: float = 0.1, stop: Stop = None,
                idle_timeout_s: float | None = None) -> Iterator[bytes]:
    """Read a serial port (USB-UART, Bluetooth SPP, a pseudo-terminal) with pyserial.

    Parameters
    ----------
    port : str
        Device name, e.g. ``/dev/ttyUSB0``, ``/dev/ttyACM0``, ``COM3``.
    baud : int
        Baud rate (ignored by pseudo-terminals and USB CDC devices).
    timeout : float
        Seconds one read waits for the first byte; sets how often ``stop`` is checked.
    stop : threading.Event or callable, optional
        Checked after every read that returned nothing; ends the generator.
    idle_timeout_s : float, optional
        End after this many seconds without data.

    Returns
    -------
    Iterator[bytes]
        The port is open when this function returns (pyserial discards bytes that arrived
        before), so a writer may start sending then.

    Raises
    ------
    SourceError
        The port cannot be opened (raised by the call itself) or fails while reading
        (unplugged); the message names it.
    ImportError
        pyserial is not installed.

    Examples
    --------
    >>> iter_serial("/dev/edgebp-no-such-port")
    Traceback (most recent call last):
    ...
    edgebp.runtime.sources.SourceError: cannot open serial port '/dev/edgebp-no-such-port' at 115200 baud: ...
    """
    try:
        import serial  # lazily: only this source needs pyserial
    except ImportError as err:  # pragma: no cover - pyserial is a dependency
        raise ImportError("reading a serial port needs pyserial (pip install pyserial)") from err
    try:
        ser = serial.Serial(port, baudrate=baud, timeout=timeout)
    except (serial.SerialException, OSError, ValueError) as err:
        raise SourceError(f"cannot open serial port {port!r} at {baud} baud: {err}") from err
    log.info("reading serial port %s at %d baud", port, baud)
    return _read_serial(ser, serial.SerialException, port, stop, idle_timeout_s)


def _read_serial(ser, serial_error: type, port: str, stop: Stop, idle_timeout_s: float | None) -> Iterator[bytes]:
    last_data = time.monotonic()
    try:
        while True:
            try:
                waiting = ser.in_waiting
                data = ser.read(waiting if waiting else 1)
            except (serial_error, OSError) as err:
                raise SourceError(f"serial port {port!r} failed while reading: {err}") from err
            if data:
                last_data = time.monotonic()
                yield data
                continue
            if _stopped(stop):
                return
            if idle_timeout_s is not None and time.monotonic() - last_data >= idle_timeout_s:
                log.info("serial port %s: no data for %.3g s; stopping", port, idle_timeout_s)
                return
    finally:
        ser.close()


def iter_stdin(chunk: int = 65536) -> Iterator[bytes]:
    """Read standard input (binary) until end of file, yielding data as soon as it arrives.

    Example: ``edgebp sim --out - | edgebp run --in -`` reads the simulator's output.
    """
    stream = sys.stdin
    if stream is None:
        raise SourceError("standard input is closed")
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        fd = None
    if fd is not None:
        while True:
            data = os.read(fd, chunk)
            if not data:
                return
            yield data
    else:  # a replaced sys.stdin without a descriptor (e.g. under a test runner)
        buf = stream.buffer
        while True:
            data = buf.read1(chunk) if hasattr(buf, "read1") else buf.read(chunk)
            if not data:
                return
            yield data


def iter_source(spec: str, follow: bool = False, baud: int = 115200, stop: Stop = None,
                idle_timeout_s: float | None = None) -> Iterator[bytes]:
    """One entry point for the command line: ``-`` = stdin, ``serial:PORT`` or a character
    device = serial port, anything else = file (followed when ``follow``).

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "x.log")
    >>> _ = open(p, "wb").write(b"hi")
    >>> b"".join(iter_source(p))
    b'hi'
    """
    if spec == "-":
        return iter_stdin()
    if spec.startswith("serial:"):
        return iter_serial(spec[len("serial:"):], baud=baud, stop=stop, idle_timeout_s=idle_timeout_s)
    try:
        mode = os.stat(spec).st_mode
    except OSError:
        mode = 0
    if stat.S_ISCHR(mode):
        return iter_serial(spec, baud=baud, stop=stop, idle_timeout_s=idle_timeout_s)
    if follow:
        return iter_follow(spec, stop=stop, idle_timeout_s=idle_timeout_s)
    return iter_file(spec)
