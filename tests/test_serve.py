"""``edgebp serve``: several streams in one process over real loopback sockets, a real
pseudo-terminal and a file, through the real ONNX Runtime path (no torch)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import tty
from pathlib import Path

import pytest

from edgebp.runtime.bundle import bundle_load
from edgebp.runtime.protocol import StreamDecoder
from edgebp.runtime.run import OutputWriter, stream_process
from edgebp.runtime.serve import Server, ServeOptions, parse_spec

WAIT_S = 30.0  # generous bound for hand-offs on a loaded machine; never a pass criterion
EDGEBP = [sys.executable, "-m", "edgebp"]


@pytest.fixture(scope="module")
def sim_log(tmp_path_factory) -> bytes:
    d = tmp_path_factory.mktemp("serve_sim")
    subprocess.run(EDGEBP + ["sim", "--source", "synth:3", "--minutes", str(20 / 60), "--out", str(d / "s.log"), "--truth", str(d / "t.csv")],
                   check=True, capture_output=True, timeout=120)
    return (d / "s.log").read_bytes()


@pytest.fixture(scope="module")
def bundle():
    return bundle_load("default")


def n_sample_lines(data: bytes) -> int:
    """Sample records in a text log (complete or cut-off lines that are not # lines)."""
    return sum(1 for ln in data.split(b"\n") if ln and not ln.startswith(b"#"))


def accounted(summary: dict) -> int:
    d = summary["decoder"]
    return d["samples_parsed"] + d["samples_rejected"] + d["samples_missing"]


def body(path: Path) -> list[str]:
    return [ln for ln in path.read_text().splitlines() if not ln.startswith("#")]


def reference(bundle, data: bytes, out: Path) -> dict:
    w = OutputWriter(str(out), ["reference"])
    try:
        return stream_process([data[i:i + 4096] for i in range(0, len(data), 4096)], bundle, StreamDecoder(), writer=w)
    finally:
        w.close()


def start(server: Server) -> threading.Thread:
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("overall", server.run()), daemon=True)
    t.result = result
    t.start()
    assert server.ready.wait(WAIT_S)
    return t


def wait_for(pred, what: str):
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > WAIT_S:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def send(port: int, data: bytes, piece: int = 1500, close_early: bool = False):
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as s:
        for i in range(0, len(data), piece):
            s.sendall(data[i:i + piece])
        if close_early:
            s.shutdown(socket.SHUT_WR)


def test_tcp_clients_and_a_file_each_get_their_own_accounted_outputs(sim_log, bundle, tmp_path):
    lines = sim_log.split(b"\n")
    mid = len(lines) // 2
    garbage = [b"garbage here", b"\xff\xfe\x00 not a sample", b"1,2,3,4,5,6,7", b"zzzz"]
    noisy = b"\n".join(lines[:mid] + garbage + lines[mid:])
    half = sim_log[: len(sim_log) // 2]  # cut in the middle of a line: the device went away
    log_file = tmp_path / "dev.log"
    log_file.write_bytes(sim_log)
    out = tmp_path / "served"

    server = Server(bundle, [parse_spec("tcp:0"), parse_spec(f"file:{log_file}")], out,
                    ServeOptions(queue_chunks=2))  # a tiny queue: back-pressure is exercised
    th = start(server)
    port = server.ports["tcp:0"]
    clients = [threading.Thread(target=send, args=(port, noisy)),
               threading.Thread(target=send, args=(port, half), kwargs={"piece": 700, "close_early": True})]
    for c in clients:
        c.start()
    for c in clients:
        c.join(WAIT_S)
    wait_for(lambda: sum(1 for s in server.streams if s.summary) == 3, "three stream summaries")
    server.request_stop()
    th.join(WAIT_S)
    assert not th.is_alive()

    overall = json.loads((out / "serve.summary.json").read_text())
    names = sorted(s["name"] for s in overall["streams"])
    assert names == sorted([f"tcp-{port}-1", f"tcp-{port}-2", "file-dev"])
    by_peer_bytes = {}
    for s in overall["streams"]:
        summ = json.loads((out / s["summary"]).read_text())
        assert (out / s["outputs"]).exists() and (out / s["outputs"]).with_suffix(".beats.csv").exists()
        assert summ["end_reason"] in ("disconnected", "end of stream"), summ["end_reason"]
        by_peer_bytes[summ["decoder"]["bytes_in"]] = (s["name"], summ)

    _, s_noisy = by_peer_bytes[len(noisy)]
    assert accounted(s_noisy) == n_sample_lines(noisy)
    assert s_noisy["decoder"]["samples_rejected"] == len(garbage)
    assert s_noisy["decoder"]["samples_parsed"] == n_sample_lines(sim_log)
    assert s_noisy["beats"] > 0

    name_half, s_half = by_peer_bytes[len(half)]
    assert s_half["end_reason"] == "disconnected"
    assert accounted(s_half) == n_sample_lines(half)
    # the disconnected (clean) TCP stream's outputs equal edgebp run's on the same bytes
    ref = reference(bundle, half, tmp_path / "ref_half.csv")
    assert body(out / f"{name_half}.csv") == body(tmp_path / "ref_half.csv")
    assert body(out / f"{name_half}.beats.csv") == body(tmp_path / "ref_half.beats.csv")
    assert s_half["decoder"] == ref["decoder"] and s_half["beats"] == ref["beats"]

    _, s_file = by_peer_bytes[len(sim_log)]
    assert s_file["name"] == "file-dev" and accounted(s_file) == n_sample_lines(sim_log)
    reference(bundle, sim_log, tmp_path / "ref_file.csv")
    assert body(out / "file-dev.beats.csv") == body(tmp_path / "ref_file.beats.csv")
    assert body(out / "file-dev.csv") == body(tmp_path / "ref_file.csv")


def test_reconnect_is_a_new_stream_and_idle_timeout_ends_a_stalled_one(sim_log, bundle, tmp_path):
    part = sim_log[:20000]
    server = Server(bundle, [parse_spec("tcp:0")], tmp_path / "o", ServeOptions(idle_timeout=0.5, max_streams=4))
    th = start(server)
    port = server.ports["tcp:0"]
    send(port, part)  # connect, send, disconnect
    stalled = socket.create_connection(("127.0.0.1", port), timeout=WAIT_S)
    stalled.sendall(part)  # then says nothing more and stays connected
    send(port, part)  # a third connection alongside, not held up by the stalled one
    wait_for(lambda: sum(1 for s in server.streams if s.summary) == 3, "three summaries")
    server.request_stop()
    th.join(WAIT_S)
    stalled.close()
    ends = sorted(s.end_reason for s in server.streams)
    assert ends == ["disconnected", "disconnected", "idle for 0.5 s"]
    assert [s.name for s in server.streams][0] == f"tcp-{port}-1"
    assert all(accounted(s.summary) == n_sample_lines(part) for s in server.streams)


def test_pty_source(sim_log, bundle, tmp_path):
    master, slave = os.openpty()
    tty.setraw(slave)
    port = os.ttyname(slave)
    data = sim_log[:30000]
    try:
        server = Server(bundle, [parse_spec(f"pty:{port}")], tmp_path / "o", ServeOptions(idle_timeout=1.0))
        th = start(server)  # the port is open once ready is set

        def writer():
            for i in range(0, len(data), 500):
                os.write(master, data[i:i + 500])

        w = threading.Thread(target=writer, daemon=True)
        w.start()
        th.join(WAIT_S)
        assert not th.is_alive()
        w.join(WAIT_S)
    finally:
        os.close(master)
        os.close(slave)
    (info,) = server.streams
    assert info.name == f"pty-{Path(port).name}" and info.end_reason == "idle for 1 s"
    assert accounted(info.summary) == n_sample_lines(data) and info.summary["decoder"]["samples_rejected"] <= 1
    assert (tmp_path / "o" / f"{info.name}.beats.csv").exists()


def test_bogus_source_is_a_clear_error(tmp_path):
    r = subprocess.run(EDGEBP + ["serve", "--source", "bogus:1", "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "--source 'bogus:1': unknown form" in r.stderr and "Traceback" not in r.stderr
    assert "batching" in subprocess.run(EDGEBP + ["serve", "--help"], capture_output=True, text=True, timeout=60).stdout


def test_a_flooding_stream_is_back_pressured_without_holding_up_another(sim_log, bundle, tmp_path, monkeypatch):
    import edgebp.runtime.run as run_mod

    real = run_mod.stream_process

    def slow_consumer(chunks, *a, **k):  # every worker takes 30 ms per chunk: a device outpaces it
        def gen():
            for c in chunks:
                time.sleep(0.03)
                yield c
        return real(gen(), *a, **k)

    monkeypatch.setattr(run_mod, "stream_process", slow_consumer)
    flood = sim_log * 3  # the device restarts at each repeat
    short = sim_log[:15000]
    server = Server(bundle, [parse_spec("tcp:0")], tmp_path / "o", ServeOptions(queue_chunks=1))
    th = start(server)
    port = server.ports["tcp:0"]

    def flooder():
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as s:
            for i in range(0, len(flood), 8192):
                s.sendall(flood[i:i + 8192])
                time.sleep(0.001)  # separate reads on the server side

    f = threading.Thread(target=flooder)
    f.start()
    wait_for(lambda: len(server.streams) == 1, "the flood to connect")
    send(port, short)
    f.join(WAIT_S)
    wait_for(lambda: len(server.streams) == 2 and all(s.summary for s in server.streams), "both summaries")
    server.request_stop()
    th.join(WAIT_S)
    s_flood, s_short = server.streams
    assert s_flood.pauses > 0  # its transport was paused while its worker caught up
    assert accounted(s_flood.summary) == n_sample_lines(flood) and s_flood.summary["decoder"]["resets"] == 2
    assert accounted(s_short.summary) == n_sample_lines(short) and s_short.end_reason == "disconnected"


def test_a_pty_closed_mid_stream_ends_that_stream_with_its_summary(sim_log, bundle, tmp_path):
    master, slave = os.openpty()
    tty.setraw(slave)
    port = os.ttyname(slave)
    data = sim_log[:20000]
    try:
        server = Server(bundle, [parse_spec(f"pty:{port}")], tmp_path / "o", ServeOptions(idle_timeout=WAIT_S))
        th = start(server)
        view = memoryview(data)
        while view:  # a blocking pty write may still return short
            view = view[os.write(master, view):]
        # close only once the stream's worker has taken every byte. FIONREAD on the slave is
        # not enough: it counts the line discipline's 4 kB buffer only, and reads 0 while the
        # rest still waits in the tty's flip buffer (CI lost 482 lines that way)
        wait_for(lambda: server.streams and server.streams[0].decoder is not None
                 and server.streams[0].decoder.counts["bytes_in"] == len(data), "the stream to take every byte")
        os.close(master)  # the device goes away
        master = None
        th.join(WAIT_S)
        assert not th.is_alive()
    finally:
        if master is not None:
            os.close(master)
        os.close(slave)
    (info,) = server.streams
    assert info.end_reason == "source error" and "failed while reading" in info.summary["source_error"]
    assert accounted(info.summary) == n_sample_lines(data)
    assert json.loads((tmp_path / "o" / f"{info.name}.summary.json").read_text())["end_reason"] == "source error"


# ---------------------------------------------------------------- batching across streams
def test_batched_streams_share_rounds_and_give_edgebp_run_outputs(sim_log, bundle, tmp_path):
    """Eight file streams (two different logs) through one batched session: the rounds
    really hold several streams' steps, and every stream's rows are edgebp run's bits."""
    lines = sim_log.split(b"\n")
    other = b"\n".join(lines[:1] + lines[1 + 700:])  # the same device header, a later stretch
    logs = []
    for i in range(8):
        p = tmp_path / f"dev{i}.log"
        p.write_bytes(sim_log if i % 2 == 0 else other)
        logs.append(p)
    out = tmp_path / "served"
    server = Server(bundle, [parse_spec(f"file:{p}") for p in logs], out, ServeOptions(read_size=2048))
    overall = server.run()
    b = overall["inference_batching"]
    stats = b["batched_models"]["model_stream_int8.onnx"]
    assert not b["refused"]
    assert stats["max_batch"] >= 4, stats  # eight busy file streams: rounds of several steps
    assert stats["mean_batch"] > 2, stats
    for data, name in ((sim_log, "a"), (other, "b")):
        reference(bundle, data, tmp_path / f"ref_{name}.csv")
    for i in range(8):
        ref = "a" if i % 2 == 0 else "b"
        assert body(out / f"file-dev{i}.csv") == body(tmp_path / f"ref_{ref}.csv"), i
        assert body(out / f"file-dev{i}.beats.csv") == body(tmp_path / f"ref_{ref}.beats.csv"), i
    # every step of every stream went through the batcher
    calls = sum(json.loads((out / f"file-dev{i}.summary.json").read_text())["model_calls"] for i in range(8))
    assert stats["steps"] == calls


def test_batch_rewrite_is_bit_exact_on_the_shipped_models_and_refuses_a_fixed_batch(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from edgebp.runtime.backends import BatchRewriteError, StepBatcher, batch_dynamic_model

    from edgebp.paths import ASSETS

    for name in ("default", ASSETS / "lowlatency_bundle"):
        b = bundle_load(name)
        for key in b.manifest["streaming"]["file_keys"].values():
            assert StepBatcher(b.file(key)).verify(lengths=(1, int(b.manifest["streaming"]["chunk"]))) == 0.0
    # a graph that flattens with a constant shape of batch 1 cannot be batched by a rewrite
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [1, -1])
    g = helper.make_graph([helper.make_node("Reshape", ["x", "shape"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6])], [shape])
    p = tmp_path / "reshape.onnx"
    onnx.save(helper.make_model(g), p)
    with pytest.raises(BatchRewriteError, match="Reshape"):
        batch_dynamic_model(p)
    # a Concat on the batch axis is refused too
    g2 = helper.make_graph([helper.make_node("Concat", ["x", "x"], ["y"], axis=0)], "g2",
                           [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                           [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])])
    p2 = tmp_path / "concat.onnx"
    onnx.save(helper.make_model(g2), p2)
    with pytest.raises(BatchRewriteError, match="axis 0"):
        batch_dynamic_model(p2)
