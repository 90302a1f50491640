"""``edgebp serve``: one process serving several device streams at once.

Every stream (a file, a serial port or pseudo-terminal, standard input, or one connection to
a TCP listener on 127.0.0.1) gets its own :class:`~edgebp.runtime.protocol.StreamDecoder`, its
own :class:`~edgebp.runtime.engine.StreamRuntime` (inside :func:`~edgebp.runtime.run.stream_process`),
its own outputs (``DIR/<name>.csv`` and ``DIR/<name>.beats.csv`` through
:class:`~edgebp.runtime.run.OutputWriter``) and its own summary (``DIR/<name>.summary.json``).
``DIR/serve.summary.json`` lists every stream served.

Design: :func:`stream_process` consumes an iterator of byte chunks, so each stream runs in its
own worker thread. TCP connections are read by one asyncio event loop; each connection's
bytes go into a bounded :class:`queue.Queue` that its worker drains. When a queue is full the
loop pauses reading that one transport (back-pressure on that device only; the loop never
blocks) and resumes it when the worker has made room. A stream that stalls or dies affects
no other stream; garbage is counted by that stream's decoder and the stream goes on.

Batching across streams (``--backend ort``, the default): the streams share one ONNX Runtime
session per model file, loaded with its batch axis made symbolic
(:func:`~edgebp.runtime.backends.batch_dynamic_model`: a load-time graph rewrite, checked op by
op and then numerically, batch-B row i against the original batch-1 session, bit-identical or
not batched). Each stream's runtime keeps its own states; its model step is handed to a
:class:`~edgebp.runtime.backends.StepBatcher`, which gathers the steps of the streams that
have one ready (feeds and states concatenated on the batch axis), makes one ORT call, and
scatters the rows back. A round runs as soon as every stream that has input in hand is waiting
on its step; a stream waiting for input is not waited for (its step joins a later round), and
no step waits more than ``batch_wait_ms`` (default 5 ms) for a round to fill. The outputs are
the same bits as ``edgebp run`` on the same bytes.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgebp.jsonsafe import json_text

log = logging.getLogger(__name__)

SPEC_FORMS = "file:PATH, tcp:PORT, pty:PATH, serial:DEV, stdin"
QUEUE_CHUNKS = 64  # chunks a TCP stream may have queued before its transport is paused


class ServeError(ValueError):
    """A bad --source or option; one line for the command line."""


@dataclass
class Spec:
    kind: str  # file | tcp | serial | stdin
    arg: str  # path, port (as text), device, or ""
    text: str

    @property
    def name(self) -> str:
        if self.kind == "file":
            return "file-" + Path(self.arg).stem
        if self.kind == "serial":
            return ("pty-" if self.text.startswith("pty:") else "serial-") + Path(self.arg).name
        return self.kind


def parse_spec(text: str) -> Spec:
    """Parse one ``--source``.

    Examples
    --------
    >>> parse_spec("tcp:9000")
    Spec(kind='tcp', arg='9000', text='tcp:9000')
    >>> parse_spec("pty:/dev/pts/3").kind
    'serial'
    >>> try:
    ...     parse_spec("bogus:1")
    ... except ServeError as exc:
    ...     print(exc)
    --source 'bogus:1': unknown form; expected one of file:PATH, tcp:PORT, pty:PATH, serial:DEV, stdin
    """
    if text in ("stdin", "-"):
        return Spec("stdin", "", text)
    kind, sep, arg = text.partition(":")
    if not sep or kind not in ("file", "tcp", "pty", "serial"):
        raise ServeError(f"--source {text!r}: unknown form; expected one of {SPEC_FORMS}")
    if not arg:
        raise ServeError(f"--source {text!r}: missing the {'port' if kind == 'tcp' else 'path'} after '{kind}:'")
    if kind == "tcp":
        try:
            port = int(arg)
        except ValueError:
            raise ServeError(f"--source {text!r}: the port must be a number (0 = any free port)") from None
        if not 0 <= port <= 65535:
            raise ServeError(f"--source {text!r}: port out of range 0..65535")
        return Spec("tcp", str(port), text)
    if kind == "file" and not Path(arg).is_file():
        raise ServeError(f"--source {text!r}: {arg}: no such file")
    return Spec("serial" if kind in ("pty", "serial") else "file", arg, text)


@dataclass
class ServeOptions:
    variant: str = "int8"
    backend: str = "ort"
    threads: int = 1
    max_streams: int | None = None
    idle_timeout: float | None = None
    duration: float | None = None
    baud: int = 115200
    read_size: int = 65536
    queue_chunks: int = QUEUE_CHUNKS
    batch: bool = True  # one batched model call per step across streams (ort backend only)
    batch_wait_ms: float = 5.0  # the longest a ready step waits for its round to fill


@dataclass
class StreamInfo:
    name: str
    source: str
    peer: str | None = None
    started: float = field(default_factory=time.time)
    ended: float | None = None
    end_reason: str | None = None
    pauses: int = 0  # times the transport was paused because the queue was full
    decoder: Any = None  # the stream's decoder while it runs: its .counts (bytes_in, samples) live
    summary: dict | None = None


class _EOF:
    def __init__(self, reason: str):
        self.reason = reason


class Server:
    """Serve the given sources until they end, ``--duration`` passes, or :meth:`request_stop`.

    :meth:`run` blocks (it runs its own event loop); :attr:`ready` is set once every listener
    and port is open, with the bound TCP ports in :attr:`ports` (``tcp:0`` binds a free one).
    """

    def __init__(self, bundle, specs: list[Spec], out_dir: str | Path, opts: ServeOptions | None = None):
        self.bundle = bundle
        self.specs = specs
        self.out_dir = Path(out_dir)
        self.opts = opts or ServeOptions()
        self.ready = threading.Event()
        self.stop_event = threading.Event()
        self.ports: dict[str, int] = {}  # spec text -> bound port
        self.streams: list[StreamInfo] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._active = 0
        self._names: collections.Counter = collections.Counter()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._protocols: set = set()
        self._done_cv = threading.Condition(self._lock)
        self.batched = None
        if self.opts.batch and self.opts.backend == "ort":
            from edgebp.runtime.backends import BatchedBackend

            self.batched = BatchedBackend(threads=self.opts.threads, max_wait_s=self.opts.batch_wait_ms / 1e3)

    # ---- one stream -------------------------------------------------------------------
    def _header(self, info: StreamInfo) -> list[str]:
        m = self.bundle.manifest
        o = self.opts
        return [f"edgebp serve: stream={info.name} source={info.source}" + (f" peer={info.peer}" if info.peer else ""),
                f"bundle={self.bundle.path} model={m['model']['name']}/{m['model']['preset']} variant={o.variant} backend={o.backend}",
                f"inputs={','.join(m['inputs'])} model_fs={m['fs']} delay={m['delay']} units=mmHg",
                "calibration: cuff readings from the stream only; beats are uncalibrated (calibrated=0) until a reading applies"]

    def _unique_name(self, base: str) -> str:
        with self._lock:
            self._names[base] += 1
            n = self._names[base]
        return base if n == 1 else f"{base}-{n}"

    def _admit(self) -> bool:
        with self._lock:
            if self.opts.max_streams is not None and self._active >= self.opts.max_streams:
                return False
            self._active += 1
            return True

    def _start_worker(self, info: StreamInfo, chunks_factory, on_end=None) -> None:
        t = threading.Thread(target=self._work, args=(info, chunks_factory, on_end), name=f"serve-{info.name}", daemon=True)
        with self._lock:
            self.streams.append(info)
            self._threads.append(t)
        t.start()

    def _work(self, info: StreamInfo, chunks_factory, on_end) -> None:
        from edgebp.runtime.engine import Calibration
        from edgebp.runtime.protocol import StreamDecoder
        from edgebp.runtime.run import OutputWriter, stream_process, summary_text

        o = self.opts
        log.info("stream %s: started (%s%s)", info.name, info.source, f", peer {info.peer}" if info.peer else "")
        cpu0 = time.thread_time()
        ended = {"reason": "end of stream"}
        summary: dict
        writer = None
        try:
            chunks = chunks_factory(ended)
            if self.batched is not None:
                chunks = self._busy_marked(chunks)
            # live sources (tcp, pty, serial, stdin): every block flushed as written, so a
            # reader of NAME.csv, or a server killed outright, loses nothing already computed
            writer = OutputWriter(str(self.out_dir / f"{info.name}.csv"), self._header(info),
                                  flush_s=1.0 if info.source.startswith("file:") else 0.0)
            info.decoder = StreamDecoder()
            summary = stream_process(chunks, self.bundle, info.decoder, backend=self.batched or o.backend, variant=o.variant, threads=o.threads,
                                     calibration=Calibration([], "auto"), writer=writer, stop=self.stop_event.is_set)
            if summary.get("source_error"):
                ended["reason"] = "source error"  # e.g. a serial port unplugged; the summary says which
            elif self.stop_event.is_set() and ended["reason"] == "end of stream":
                ended["reason"] = "server stopped"
        except Exception as exc:  # one stream's failure is that stream's, never the server's
            log.error("stream %s: failed: %s", info.name, exc)
            summary = {"error": f"{type(exc).__name__}: {exc}"}
            ended["reason"] = "error"
        finally:
            if writer is not None:
                writer.close()
            if on_end is not None:
                on_end()
        info.ended = time.time()
        info.end_reason = ended["reason"]
        summary = {"name": info.name, "source": info.source, "peer": info.peer, "end_reason": info.end_reason,
                   "started_unix": info.started, "ended_unix": info.ended, "cpu_seconds": time.thread_time() - cpu0,
                   "transport_pauses": info.pauses, **summary}
        info.summary = summary
        with open(self.out_dir / f"{info.name}.summary.json", "w") as f:
            f.write(json_text(summary, indent=2))  # strict JSON: NaN/inf as null
        if "decoder" in summary:
            log.info("stream %s: ended (%s)\n%s", info.name, info.end_reason, summary_text(summary))
        else:
            log.info("stream %s: ended (%s)", info.name, info.end_reason)
        with self._done_cv:
            self._active -= 1
            self._done_cv.notify_all()

    def _busy_marked(self, chunks):
        """``chunks``, with the stream marked busy from taking a chunk until it asks for the
        next: the batcher waits for busy streams only."""
        b = self.batched
        for c in chunks:
            b.busy_enter()
            try:
                yield c
            finally:
                b.busy_exit()

    def _queue_chunks(self, q: queue.Queue, on_data_taken, ended: dict):
        """The iterator a TCP stream's worker consumes: chunks from its queue until EOF,
        the idle timeout, or the server's stop."""
        idle = self.opts.idle_timeout
        last = time.monotonic()
        while True:
            try:
                item = q.get(timeout=0.1)
            except queue.Empty:
                if self.stop_event.is_set():
                    ended["reason"] = "server stopped"
                    return
                if idle is not None and time.monotonic() - last >= idle:
                    ended["reason"] = f"idle for {idle:g} s"
                    return
                continue
            on_data_taken()
            if isinstance(item, _EOF):
                ended["reason"] = item.reason
                return
            last = time.monotonic()
            yield item

    # ---- sources read by a thread ------------------------------------------------------
    def _start_thread_source(self, spec: Spec) -> None:
        from edgebp.runtime import sources

        o = self.opts
        if spec.kind == "file":
            chunks = sources.iter_file(spec.arg, chunk=o.read_size)
        elif spec.kind == "serial":
            chunks = sources.iter_serial(spec.arg, baud=o.baud, stop=self.stop_event, idle_timeout_s=o.idle_timeout)
        else:
            chunks = sources.iter_stdin(chunk=o.read_size)
        if not self._admit():
            log.error("%s: not served: --max-streams %d reached", spec.text, o.max_streams)
            return
        info = StreamInfo(self._unique_name(spec.name), spec.text)

        def factory(ended, chunks=chunks):
            def gen():
                t_last = time.monotonic()
                for c in chunks:
                    t_last = time.monotonic()  # when the chunk arrived, as iter_serial times idleness
                    yield c
                if self.stop_event.is_set():
                    ended["reason"] = "server stopped"
                elif spec.kind == "serial" and o.idle_timeout is not None and time.monotonic() - t_last >= o.idle_timeout * 0.99:
                    ended["reason"] = f"idle for {o.idle_timeout:g} s"
            return gen()

        self._start_worker(info, factory)

    # ---- TCP -----------------------------------------------------------------------------
    def _tcp_protocol(self, port_label: str, counter: list):
        server = self

        class TcpStream(asyncio.Protocol):
            def connection_made(self, transport):
                self.transport = transport
                self.pending: collections.deque = collections.deque()
                self.paused = False
                self.closed = False
                peer = transport.get_extra_info("peername")
                if not server._admit():
                    log.error("tcp:%s: connection from %s refused: --max-streams %d reached", port_label, peer, server.opts.max_streams)
                    self.info = None
                    transport.close()
                    return
                counter[0] += 1
                self.info = StreamInfo(server._unique_name(f"tcp-{port_label}-{counter[0]}"), f"tcp:{port_label}",
                                       peer=f"{peer[0]}:{peer[1]}" if peer else None)
                self.q: queue.Queue = queue.Queue(maxsize=max(1, server.opts.queue_chunks))
                server._protocols.add(self)
                loop = server._loop

                def taken():  # worker thread: room was made; let the loop move what waits
                    if self.pending:
                        loop.call_soon_threadsafe(self.pump)

                def on_end():  # the worker is done (EOF, idle, stop, error): close the connection
                    loop.call_soon_threadsafe(self.end_from_worker)

                server._start_worker(self.info, lambda ended: server._queue_chunks(self.q, taken, ended), on_end)

            def end_from_worker(self):
                self.closed = True
                self.pending.clear()
                server._protocols.discard(self)
                if not self.transport.is_closing():
                    self.transport.close()

            def pump(self):
                while self.pending:
                    try:
                        self.q.put_nowait(self.pending[0])
                    except queue.Full:
                        return
                    self.pending.popleft()
                if self.paused and not self.closed and not self.transport.is_closing():
                    self.paused = False
                    self.transport.resume_reading()

            def offer(self, item):
                if self.info is None or self.closed:
                    return
                self.pending.append(item)
                self.pump()
                if self.pending and not self.paused and not isinstance(item, _EOF) and not self.transport.is_closing():
                    self.paused = True
                    self.info.pauses += 1
                    self.transport.pause_reading()

            def data_received(self, data):
                self.offer(data)

            def eof_received(self):
                return False  # close our side too; connection_lost follows

            def connection_lost(self, exc):
                if self.info is None or self.closed:
                    return
                self.offer(_EOF("disconnected" if exc is None else f"connection lost: {exc}"))
                self.closed = True

        return TcpStream

    # ---- the server ------------------------------------------------------------------------
    def request_stop(self) -> None:
        self.stop_event.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        servers = []
        try:
            for spec in self.specs:
                if spec.kind != "tcp":
                    continue
                counter = [0]
                port = int(spec.arg)
                label = {"n": str(port)}

                def factory(label=label, counter=counter):
                    return self._tcp_protocol(label["n"], counter)()

                try:
                    srv = await self._loop.create_server(factory, "127.0.0.1", port)
                except OSError as exc:
                    raise ServeError(f"--source {spec.text}: cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}") from None
                bound = srv.sockets[0].getsockname()[1]
                label["n"] = str(bound)
                self.ports[spec.text] = bound
                servers.append(srv)
                log.info("listening on 127.0.0.1:%d (tcp:%s): each connection is one stream", bound, bound)
            for spec in self.specs:
                if spec.kind != "tcp":
                    self._start_thread_source(spec)
        except BaseException:
            self.stop_event.set()
            for s in servers:
                s.close()
            raise
        finally:
            self.ready.set()
        t0 = time.monotonic()
        d = self.opts.duration
        while not self.stop_event.is_set():
            if d is not None and time.monotonic() - t0 >= d:
                log.warning("--duration %g s reached: stopping", d)
                break
            if not servers:
                with self._lock:
                    if all(not t.is_alive() for t in self._threads):
                        break  # no listener and every source has ended
            await asyncio.sleep(0.05)
        self.stop_event.set()
        for s in servers:
            s.close()
        for p in list(self._protocols):
            p.offer(_EOF("server stopped"))
        # let the workers finish (they see the stop between chunks) while the loop keeps
        # pumping and closing transports
        while True:
            with self._lock:
                alive = [t for t in self._threads if t.is_alive()]
            if not alive:
                break
            await asyncio.sleep(0.05)
        for s in servers:
            await s.wait_closed()

    def run(self) -> dict:
        """Serve; returns the contents of ``serve.summary.json`` (also written)."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        t0, cpu0 = time.time(), time.process_time()
        try:
            asyncio.run(self._main())
        except KeyboardInterrupt:
            self.stop_event.set()
            log.warning("interrupted: waiting for the streams to write their summaries")
            for t in list(self._threads):
                t.join(timeout=30)
        overall = {
            "out_dir": str(self.out_dir), "sources": [s.text for s in self.specs], "ports": self.ports,
            "started_unix": t0, "wall_seconds": time.time() - t0, "process_cpu_seconds": time.process_time() - cpu0,
            "inference_batching": self.batched.describe() if self.batched is not None
            else f"off: every stream runs its own batch-1 model calls ({'--backend ' + self.opts.backend if self.opts.backend != 'ort' else 'batching disabled'})",
            "streams": [{"name": s.name, "source": s.source, "peer": s.peer, "end_reason": s.end_reason,
                         "summary": f"{s.name}.summary.json", "outputs": f"{s.name}.csv",
                         "samples_parsed": (s.summary or {}).get("decoder", {}).get("samples_parsed"),
                         "samples_rejected": (s.summary or {}).get("decoder", {}).get("samples_rejected"),
                         "samples_missing": (s.summary or {}).get("decoder", {}).get("samples_missing"),
                         "beats": (s.summary or {}).get("beats"), "cpu_seconds": (s.summary or {}).get("cpu_seconds"),
                         "error": (s.summary or {}).get("error")}
                        for s in self.streams],
        }
        with open(self.out_dir / "serve.summary.json", "w") as f:
            f.write(json_text(overall, indent=2))
        return overall
