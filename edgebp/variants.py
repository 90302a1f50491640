"""The one list of model variant names, shared by every command's ``--variant``/``--variants``.

A variant names what is run, the same in ``evaluate``, ``run``, ``serve``, ``bench`` and
``budget``: ``stream-*`` is a bundle's streaming model stepped by the streaming runtime (what
``edgebp run`` deploys), a bare precision (``int8``, ``fp32``, ``pruned``) is the bundle's
window model under ONNX Runtime, ``torch-fp32`` a training run's own torch model and
``tensorrt`` the window models through TensorRT. With ``--backend tensorrt`` every variant runs
its TensorRT form (:func:`tensorrt_file_key`): int8 the symmetric Q/DQ file, fp16 the fp16 file,
fp32 the fp32 file itself. A command supports the subset it can run
and refuses the others with the list of valid ones. Names used before this list existed
(``ort-int8``, ``stream_int8``...) are accepted with a deprecation warning.

Examples
--------
>>> variant_canonical("ort-int8", warn=lambda m: None)
'int8'
>>> variant_canonical("stream-int8")
'stream-int8'
>>> bundle_file_key("stream-fp32")
'stream_fp32'
>>> tensorrt_file_key("int8", streaming=True), tensorrt_file_key("fp16", streaming=False)
('stream_trt_int8', 'trt_fp16')
"""

from __future__ import annotations

from typing import Callable

import click

from edgebp.cli_types import _OneLine

# name -> what it runs (shown in --help and the docs)
VARIANTS: dict[str, str] = {
    "stream-int8": "the bundle's streaming model, int8, stepped by the streaming runtime (what edgebp run deploys)",
    "stream-fp32": "the bundle's streaming model, fp32, stepped by the streaming runtime",
    "stream-fp16": "the bundle's streaming model, TensorRT fp16 form (--backend tensorrt)",
    "stream-pruned": "the bundle's pruned streaming model (export --prune), fp32, stepped by the streaming runtime",
    "stream-pruned-int8": "the bundle's pruned streaming model (export --prune), int8, stepped by the streaming runtime",
    "int8": "the bundle's window model, int8, under ONNX Runtime",
    "fp32": "the bundle's window model, fp32, under ONNX Runtime",
    "fp16": "the bundle's window model, TensorRT fp16 form (--backend tensorrt)",
    "pruned": "the bundle's pruned window model, fp32, under ONNX Runtime",
    "pruned-int8": "the bundle's pruned window model, int8, under ONNX Runtime",
    "torch-fp32": "a training run's torch model (fp32)",
    "tensorrt": "the bundle's window models (TensorRT int8 and fp16 forms) through TensorRT",
}

# old spellings (bench's ort-*, budget's bundle file keys) -> the name above
DEPRECATED: dict[str, str] = {
    "ort-int8": "int8",
    "ort-fp32": "fp32",
    "stream_int8": "stream-int8",
    "stream_fp32": "stream-fp32",
    "pruned_int8": "pruned-int8",
}

# the runtime's subset (edgebp run, serve): a streaming bundle runs stream-*, a window bundle
# int8/fp32/pruned*; the pruned ones exist in bundles exported with --prune (no TensorRT form)
RUNTIME_VARIANTS = ("stream-int8", "stream-fp32", "stream-fp16", "int8", "fp32", "fp16",
                    "stream-pruned", "stream-pruned-int8", "pruned", "pruned-int8")
EVALUATE_VARIANTS = ("stream-int8", "stream-fp32", "int8", "fp32", "pruned", "pruned-int8", "stream-pruned", "stream-pruned-int8")
BENCH_VARIANTS = ("stream-int8", "stream-fp32", "torch-fp32", "fp32", "int8", "pruned", "pruned-int8", "tensorrt")
BUDGET_VARIANTS = ("stream-int8", "stream-fp32", "int8", "fp32", "pruned", "pruned-int8")


def _echo_err(message: str) -> None:
    click.echo(message, err=True)


def variant_canonical(name: str, warn: Callable[[str], None] = _echo_err) -> str:
    """``name`` as a name of :data:`VARIANTS`: an old spelling is mapped (and ``warn`` told)."""
    if name in DEPRECATED:
        new = DEPRECATED[name]
        warn(f"variant {name!r} is deprecated; use {new!r}")
        return new
    return name


#: (streaming?, precision) -> the bundle file key TensorRT runs. int8 and fp16 have a form of
#: their own (export writes them: symmetric Q/DQ; fp16 with float32 inputs and outputs); the
#: fp32 models are already in a form TensorRT parses.
TENSORRT_FILE_KEYS: dict[tuple[bool, str], str] = {
    (True, "int8"): "stream_trt_int8", (True, "fp16"): "stream_trt_fp16", (True, "fp32"): "stream_fp32",
    (False, "int8"): "trt_int8", (False, "fp16"): "trt_fp16", (False, "fp32"): "fp32", (False, "pruned"): "pruned",
}


def tensorrt_file_key(precision: str, streaming: bool) -> str:
    """The bundle file key ``--backend tensorrt`` runs for a runtime precision (``int8``,
    ``fp16``, ``fp32``; ``pruned`` for window models); ValueError naming the valid ones."""
    key = TENSORRT_FILE_KEYS.get((bool(streaming), precision))
    if key is None:
        valid = sorted(p for s, p in TENSORRT_FILE_KEYS if s == bool(streaming))
        raise ValueError(f"variant {precision!r} has no TensorRT form for a {'streaming' if streaming else 'window'} model; valid: {', '.join(valid)}")
    return key


def bundle_file_key(name: str) -> str:
    """The key of a bundle manifest's ``files`` for a variant (``stream-int8`` -> ``stream_int8``)."""
    return name.replace("-", "_")


class VariantChoice(_OneLine, click.Choice):
    """A ``click.Choice`` over a command's subset of :data:`VARIANTS` that also takes the
    deprecated spellings (with a warning) and returns the canonical name; a name outside the
    subset is an error listing the valid ones."""

    def __init__(self, names: tuple[str, ...] = tuple(VARIANTS), extra: tuple[str, ...] = ()):
        super().__init__(list(names) + list(extra))

    def convert(self, value, param, ctx):
        if isinstance(value, str) and value in DEPRECATED and DEPRECATED[value] in self.choices:
            value = variant_canonical(value)
        return super().convert(value, param, ctx)


def variants_list(text: str, allowed: tuple[str, ...], option: str = "--variants") -> list[str]:
    """A comma-separated list of variant names, each canonical and in ``allowed``; else a
    ``click.BadParameter`` naming the bad one and listing the valid ones."""
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name = variant_canonical(part)
        if name not in allowed:
            raise click.BadParameter(f"unknown variant {part!r}; valid variants: {', '.join(allowed)}", param_hint=f"'{option}'")
        out.append(name)
    if not out:
        raise click.BadParameter(f"no variant given (valid: {', '.join(allowed)})", param_hint=f"'{option}'")
    return out
