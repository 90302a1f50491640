"""The device's UART: transmit buffer, wire timing, resets, and real-time output (file or pty).

Model
-----
The firmware puts each frame (or header) into a transmit buffer of ``buffer_bytes``; the
UART drains it at ``baud / 10`` bytes per second (8N1: start bit, 8 data bits, stop bit).
When a frame does not fit in the free space, the firmware drops the *whole* frame (it never
sends half a frame) and counts it. The buffer's fill is the bytes queued and not yet on the
wire. A reset clears the buffer: a frame being shifted out is cut at the byte reached, the
frames behind it are lost. ``baud=0`` means no UART limit (e.g. USB CDC).

Examples
--------
>>> import numpy as np
>>> # 12-byte frames every 1 ms into a 9600-baud UART (960 B/s) with a 64-byte buffer
>>> sch = uart_schedule(np.arange(20) * 1e-3, np.full(20, 12), baud=9600, buffer_bytes=64)
>>> sch.accepted.astype(int).tolist()
[1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
>>> round(float(sch.end[0]), 4)
0.0125
"""

from __future__ import annotations

import logging
import os
import select
import time
from collections import deque
from dataclasses import dataclass
from typing import BinaryIO, Callable, Sequence

import numpy as np

log = logging.getLogger(__name__)

BITS_PER_BYTE = 10  # 8N1


@dataclass
class UartSchedule:
    """Per item (in offer order): accepted into the buffer, wire start/end time, bytes sent."""

    accepted: np.ndarray  # bool
    start: np.ndarray  # float64 s (NaN when not accepted)
    end: np.ndarray  # float64 s
    sent: np.ndarray  # int64 bytes actually on the wire (< size when a reset cut it)


def uart_schedule(
    t_ready: np.ndarray,
    sizes: np.ndarray,
    baud: int,
    buffer_bytes: int,
    resets: Sequence[float] = (),
) -> UartSchedule:
    """Simulate the transmit buffer and the wire for items offered at ``t_ready``.

    Parameters
    ----------
    t_ready : np.ndarray
        Time (s) each item is handed to the UART driver; non-decreasing.
    sizes : np.ndarray
        Bytes per item.
    baud : int
        Line rate in bit/s (8N1, 10 bits per byte); 0 = unlimited.
    buffer_bytes : int
        Transmit buffer size.
    resets : sequence of float
        Times at which the device resets (the buffer is cleared, the wire stops).

    Returns
    -------
    UartSchedule

    Examples
    --------
    >>> s = uart_schedule(np.array([0.0, 0.0]), np.array([100, 100]), 10_000, 1024, resets=[0.05])
    >>> s.sent.tolist(), s.accepted.tolist()
    ([50, 0], [True, True])
    """
    t_ready = np.asarray(t_ready, dtype=np.float64)
    sizes = np.asarray(sizes, dtype=np.int64)
    n = len(t_ready)
    accepted = np.zeros(n, dtype=bool)
    start = np.full(n, np.nan)
    end = np.full(n, np.nan)
    sent = np.zeros(n, dtype=np.int64)
    if baud <= 0:
        accepted[:] = True
        start[:] = t_ready
        end[:] = t_ready
        sent[:] = sizes
        return UartSchedule(accepted, start, end, sent)
    rate = baud / BITS_PER_BYTE
    resets = sorted(float(r) for r in resets)
    ri = 0
    busy_until = -np.inf
    inflight: deque[int] = deque()
    t_list = t_ready.tolist()
    s_list = sizes.tolist()
    start_l = [float("nan")] * n
    end_l = [float("nan")] * n
    sent_l = [0] * n
    acc_l = [False] * n
    for i in range(n):
        t = t_list[i]
        while ri < len(resets) and resets[ri] <= t:
            tr = resets[ri]
            ri += 1
            for j in inflight:
                if end_l[j] > tr:
                    sent_l[j] = 0 if start_l[j] >= tr else int((tr - start_l[j]) * rate + 1e-6)
            inflight.clear()
            busy_until = min(busy_until, tr)
        while inflight and end_l[inflight[0]] <= t:
            inflight.popleft()
        queued = max(0.0, (busy_until - t) * rate)
        size = s_list[i]
        if queued + size > buffer_bytes + 1e-9:
            continue
        s0 = max(t, busy_until)
        acc_l[i] = True
        start_l[i] = s0
        end_l[i] = s0 + size / rate
        sent_l[i] = size
        busy_until = end_l[i]
        inflight.append(i)
    # resets after the last item still cut what is in flight
    while ri < len(resets):
        tr = resets[ri]
        ri += 1
        for j in inflight:
            if end_l[j] > tr:
                sent_l[j] = 0 if start_l[j] >= tr else int((tr - start_l[j]) * rate + 1e-6)
        inflight.clear()
    accepted[:] = acc_l
    start[:] = start_l
    end[:] = end_l
    sent[:] = sent_l
    return UartSchedule(accepted, start, end, sent)


def paced_write(
    chunks: Sequence[bytes],
    times: np.ndarray,
    write: Callable[[bytes], None],
    speed: float = 1.0,
    realtime: bool = True,
    progress_s: float = 30.0,
    stop: Callable[[], bool] | None = None,
    on_progress: Callable[[float, int], None] | None = None,
) -> int:
    """Write ``chunks`` in order, each no earlier than its wire time (scaled by ``speed``).

    Chunks due within 10 ms of each other go out in one write, so the pace is real time
    without one system call per frame. ``realtime=False`` writes everything at once.

    Parameters
    ----------
    chunks : sequence of bytes
        The wire items (header, frames) in order.
    times : np.ndarray
        Wire end time (s) of each chunk, relative to any origin.
    write : callable
        Receives bytes (e.g. ``file.write`` or a pty writer).
    speed : float
        1.0 = real time; 10.0 = ten times faster.
    realtime : bool
        Pace the writes (True) or write as fast as possible (False).
    progress_s : float
        Log a progress line every this many seconds of stream.
    stop : callable, optional
        Polled between writes; returning True ends the output early.
    on_progress : callable, optional
        Called as ``on_progress(stream_seconds, bytes)`` every ``progress_s``; default logs.

    Returns
    -------
    int
        Bytes written.

    Examples
    --------
    >>> out = []
    >>> paced_write([b"a", b"b", b"c"], np.array([0.0, 0.001, 0.002]), out.append, speed=100.0)
    3
    >>> b"".join(out)
    b'abc'
    """
    total = 0
    if not realtime:
        data = b"".join(chunks)
        write(data)
        return len(data)
    if speed <= 0:
        raise ValueError(f"speed must be positive, got {speed}")
    times = np.asarray(times, dtype=np.float64)
    if len(times) == 0:
        return 0
    t0_stream = float(times[0])
    t0_wall = time.monotonic()
    i = 0
    n = len(chunks)
    next_progress = progress_s
    while i < n:
        if stop is not None and stop():
            log.info("output stopped early after %d bytes", total)
            break
        due = (float(times[i]) - t0_stream) / speed
        wait = due - (time.monotonic() - t0_wall)
        if wait > 0:
            time.sleep(wait)
        now_stream = (time.monotonic() - t0_wall) * speed + t0_stream + 0.010 * speed
        j = i + 1
        while j < n and times[j] <= now_stream:
            j += 1
        data = b"".join(chunks[i:j])
        write(data)
        total += len(data)
        i = j
        if float(times[i - 1]) - t0_stream >= next_progress:
            if on_progress is not None:
                on_progress(float(times[i - 1]) - t0_stream, total)
            else:
                log.info("streamed %.0f s (%d bytes)", float(times[i - 1]) - t0_stream, total)
            next_progress += progress_s
    return total


class PtyPort:
    """A pseudo-terminal pair: the simulator writes the master, a reader opens ``path``.

    The slave side is put in raw mode (no echo, no line editing) so binary frames pass
    unchanged. :meth:`wait_reader` blocks until a program opens the slave (the master stops
    reporting hang-up), because a serial reader flushes its input when it opens the port.

    Examples
    --------
    >>> port = PtyPort()
    >>> port.path.startswith("/dev/")
    True
    >>> port.close()
    """

    def __init__(self) -> None:
        import tty

        self.master, slave = os.openpty()
        self.path = os.ttyname(slave)
        tty.setraw(slave)
        # The reader owns the slave; keeping our copy open would hide when it connects.
        os.close(slave)

    def _hung_up(self) -> bool:
        p = select.poll()
        p.register(self.master, select.POLLHUP)
        return any(ev & select.POLLHUP for _, ev in p.poll(0))

    def wait_reader(self, timeout_s: float | None = None, settle_s: float = 0.2) -> bool:
        """Block until a reader has the slave open (True) or the timeout passes (False).

        Then wait ``settle_s`` more: a serial library configures the port and flushes its
        input right after opening it, which would discard the first bytes.
        """
        t_end = None if timeout_s is None else time.monotonic() + timeout_s
        while self._hung_up():
            if t_end is not None and time.monotonic() >= t_end:
                return False
            time.sleep(0.02)
        time.sleep(settle_s)
        return True

    def reader_gone(self) -> bool:
        """True when no program has the slave open any more."""
        return self._hung_up()

    def write(self, data: bytes) -> None:
        """Write all of ``data`` (blocks while the reader lags, like a full UART FIFO)."""
        view = memoryview(data)
        while view:
            try:
                k = os.write(self.master, view)
            except BlockingIOError:
                time.sleep(0.001)
                continue
            view = view[k:]

    def drain(self, timeout_s: float = 5.0, settle_s: float = 0.25) -> None:
        """Wait until the reader has read everything written (or ``timeout_s`` passes).

        Closing the master discards what the reader has not read yet. The slave's input
        queue (``FIONREAD``) only shows what the kernel has moved out of its flip buffer, so
        "drained" means the queue stayed empty for ``settle_s``.
        """
        import fcntl
        import struct
        import termios

        if self._hung_up():
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError:
            return
        try:
            t_end = time.monotonic() + timeout_s
            empty_since = None
            while time.monotonic() < t_end:
                pending = struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
                now = time.monotonic()
                if pending:
                    empty_since = None
                elif empty_since is None:
                    empty_since = now
                elif now - empty_since >= settle_s:
                    break
                time.sleep(0.02)
        finally:
            os.close(fd)

    def linger(self, timeout_s: float) -> bool:
        """After the last byte: keep the port open until the reader closes it (True) or
        ``timeout_s`` passes (False). A reader blocked in a multi-byte read (pyserial's
        ``read(n)`` with a timeout) loses what it has gathered if the port hangs up under it.
        """
        t_end = time.monotonic() + timeout_s
        while not self._hung_up():
            if time.monotonic() >= t_end:
                return False
            time.sleep(0.02)
        return True

    def close(self) -> None:
        """Close the master (the reader sees end of file / hang-up)."""
        try:
            os.close(self.master)
        except OSError:
            pass


def stream_write_file(chunks: Sequence[bytes], times: np.ndarray, fh: BinaryIO, realtime: bool = False,
                      speed: float = 1.0, on_progress: Callable[[float, int], None] | None = None) -> int:
    """Write the wire items to an open binary file (flushing each paced write).

    Examples
    --------
    >>> import io
    >>> buf = io.BytesIO()
    >>> stream_write_file([b"x\\n", b"y\\n"], np.array([0.0, 0.1]), buf)
    4
    """
    def write(data: bytes) -> None:
        fh.write(data)
        if realtime:
            fh.flush()

    n = paced_write(chunks, times, write, speed=speed, realtime=realtime, on_progress=on_progress)
    fh.flush()
    return n
