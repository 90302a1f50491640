"""The runtime's bound ONNX Runtime step (``OrtBackend.step``: states kept in IOBinding
buffers) gives the same bits as the plain ``session.run`` with the states as feeds.

A real minute of a validation record through :class:`edgebp.runtime.engine.StreamRuntime`,
in 20 ms packets, a reset half-way (the engine's fresh zero states must be copied into the
bound buffers) and the padded last step of ``flush``; int8 and fp32 streaming models. The
plain path is the same engine with ``_step`` switched off.
"""

from __future__ import annotations

import numpy as np
import pytest

SECONDS = 60.0  # conftest.validation_minute: a minute of a validation record of the default bundle


def _stream(bundle, vals, fs, variant, bound: bool):
    from edgebp.runtime.engine import StreamRuntime

    rt = StreamRuntime(bundle, fs, {c: i for i, c in enumerate(bundle.inputs)}, variant=variant)
    if not bound:
        rt._step = None
    outs = []
    half = (len(vals) // 2) // 5 * 5 + 3  # a reset mid-packet
    for part in (vals[:half], vals[half:]):
        for i in range(0, len(part), 5):
            outs.append(rt.push(part[i:i + 5]))
        outs.append(rt.flush())  # the last step padded to a whole chunk
        rt.reset()
    cat = lambda k: np.concatenate([getattr(o, k) for o in outs])  # noqa: E731
    return rt, cat("abp"), cat("valid"), cat("reason")


@pytest.mark.parametrize("variant", ["int8", "fp32"])
def test_bound_step_equals_plain_run(bundle, validation_minute, variant):
    vals, fs = validation_minute
    rt, abp, valid, reason = _stream(bundle, vals, fs, variant, bound=True)
    st = rt.backend._step
    assert st is not None and st["shape"] is not None, "the bound step was not used"
    _, abp0, valid0, reason0 = _stream(bundle, vals, fs, variant, bound=False)
    assert len(abp) == len(abp0) > 0.9 * SECONDS * bundle.manifest["fs"]
    assert np.array_equal(valid, valid0) and np.array_equal(reason, reason0)
    assert np.array_equal(abp, abp0, equal_nan=True)
    # the comparison can fail: the outputs move (not a constant graph) and most are claimed
    assert valid.mean() > 0.8 and np.nanstd(abp) > 5.0


@pytest.mark.parametrize("variant", ["int8", "fp32"])
def test_fixed_time_axis_gives_the_free_axis_bits(bundle, validation_minute, variant):
    """The engine's session fixes the streaming input's time axis at the step (ONNX Runtime
    then folds the states' shape arithmetic away); a session with the axis free, as the
    bundle's file has it, gives the same bits on the same packets, reset and padded step."""
    from edgebp.runtime.backends import OrtBackend

    vals, fs = validation_minute
    chunk = int(bundle.manifest["streaming"]["chunk"])
    rt, abp, valid, reason = _stream(bundle, vals, fs, variant, bound=True)
    assert rt.backend.session.get_inputs()[0].shape[-1] == chunk, "the time axis was not fixed"
    free = OrtBackend(bundle.file(f"stream_{variant}"))
    assert isinstance(free.session.get_inputs()[0].shape[-1], str)

    import edgebp.runtime.engine as engine_mod

    real = engine_mod.backend_open
    try:
        engine_mod.backend_open = lambda *a, **k: free
        _, abp0, valid0, reason0 = _stream(bundle, vals, fs, variant, bound=True)
    finally:
        engine_mod.backend_open = real
    assert free._step is not None and free._step["shape"] == (1, len(bundle.inputs), chunk), "the free session was not stepped"
    assert np.array_equal(valid, valid0) and np.array_equal(reason, reason0)
    assert np.array_equal(abp, abp0, equal_nan=True)
    assert valid.mean() > 0.8 and np.nanstd(abp) > 5.0


def test_bound_step_alone_matches_run_and_reuses_its_buffers(bundle):
    """Direct use: the returned states passed back are not copied (the same objects come round
    every other call), a foreign state is copied in, and each output equals ``run``."""
    from edgebp.runtime.backends import OrtBackend

    be = OrtBackend(bundle.file("stream_int8"))
    ref = OrtBackend(bundle.file("stream_int8"))
    names = be.input_names[1:]
    shapes = [tuple(i.shape) for i in be.session.get_inputs()[1:]]
    rng = np.random.default_rng(0)
    st = [np.zeros(s, np.float32) for s in shapes]
    st_ref = [a.copy() for a in st]
    seen = []
    for i in range(6):
        x = rng.normal(size=(1, len(bundle.inputs), int(bundle.manifest["streaming"]["chunk"]))).astype(np.float32)
        if i == 3:
            st = [np.full(s, 0.25, np.float32) for s in shapes]  # a state from outside
            st_ref = [a.copy() for a in st]
        y, st = be.step(x, st)
        res = ref.run({ref.input_names[0]: x} | dict(zip(names, st_ref)))
        st_ref = [np.array(a) for a in res[1:]]
        assert np.array_equal(y, res[0]) and all(np.array_equal(a, b) for a, b in zip(st, st_ref))
        seen.append(id(st[0]))
    assert seen[0::2] == [seen[0]] * 3 and seen[1::2] == [seen[1]] * 3 and seen[0] != seen[1], seen  # two buffers, ping-pong
