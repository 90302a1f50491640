"""Compare edgebp's MSCA-CSSC-UNet with the public network, weights copied across.

    python -m edgebp.train.seed_compare PATH/TO/models.py

``models.py`` is the public file of ``abin7777/MSCA-CSSC-UNet`` (or ``abin7777/CBPE-Net``: the
same network), e.g. ``git -C MIRROR show HEAD:models.py > models.py``. It is imported as it is
(its unused sklearn/scipy/tqdm imports are satisfied by empty stand-ins when absent), its
``MSA_UNet_skip_level_connation(deep_supervision=True)`` is built with random weights, those
weights are copied by name into edgebp's paper-size network built with ``pool="floor"`` and
with the default ``pool="ceil"``, and the four deep-supervision outputs at the window's last
sample are compared on random 88-sample inputs (eval mode). Prints one JSON line per form:
the largest absolute difference per head. The figures in docs/models.md come from this.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
import types
from pathlib import Path

import torch

log = logging.getLogger(__name__)


def _public_module(path: Path):
    for name in ("sklearn", "sklearn.metrics", "scipy", "scipy.io", "tqdm"):
        try:
            __import__(name)
        except ImportError:  # imported by the public file, used only by its training script
            mod = types.ModuleType(name)
            mod.tqdm = lambda x, **_: x  # type: ignore[attr-defined]
            for f in ("mean_squared_error", "r2_score", "mean_absolute_error"):
                setattr(mod, f, None)
            sys.modules[name] = mod
    spec = importlib.util.spec_from_file_location("public_unet_models", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def _map_state(public: dict[str, torch.Tensor], depth: int = 5) -> dict[str, torch.Tensor]:
    """Public state-dict names to edgebp's (see models_unet: same blocks, other names)."""
    out: dict[str, torch.Tensor] = {}
    for k, v in public.items():
        parts = k.split(".")
        head = parts[0]
        if head.startswith("conv") and parts[1] == "conv":  # convI_J.conv.X.*
            i, j = map(int, head[4:].split("_"))
            dst = f"encoder.{i}" if j == 0 else f"nodes.{i}_{j}"
            out[".".join([dst, *parts[2:]])] = v
        elif head.startswith("final"):
            out[".".join([f"heads.{int(head[5:]) - 1}", *parts[1:]])] = v
        elif head.startswith("attblock"):
            if parts[-1] == "pe":  # fixed sinusoid buffers; edgebp builds the same table itself
                continue
            i, j = map(int, head[8:].split("_"))
            if parts[1] == "models":  # Full_MSCA: models.K.MHA.*
                kk, rest = int(parts[2]), parts[4:]
            else:  # Lite_MSCA: MHA.*
                kk, rest = 0, parts[2:]
            dst = f"attn.{i}_{j}.{kk}"
            if rest[0] == "in_proj_weight" or rest[0] == "in_proj_bias":
                q, kv, vv = v.chunk(3, dim=0)
                kind = "weight" if rest[0].endswith("weight") else "bias"
                out[f"{dst}.q.{kind}"], out[f"{dst}.k.{kind}"], out[f"{dst}.v.{kind}"] = q, kv, vv
            elif rest[0] == "out_proj":
                out[f"{dst}.o.{rest[1]}"] = v
            else:
                raise KeyError(k)
        elif head.startswith("x") and "_up" in head:  # xI_J_up[_N]: cross-scale skips
            name, _, suffix = head[1:].partition("_up")
            i, j = map(int, name.split("_"))
            n = int(suffix[1:]) if suffix else 0
            sub = {"channel_reduce": "reduce", "refine": "refine"}[parts[1]]
            out[".".join([f"cssc.{i}_{j}.{n}", sub, *parts[2:]])] = v
        else:
            raise KeyError(k)
    return out


def compare(models_py: Path, in_channels: int = 1, batch: int = 3, seed: int = 0) -> list[dict]:
    """Largest |public - edgebp| per deep-supervision head, for the floor and the ceil form."""
    from edgebp.train.models_unet import MSCACSSCUNet

    mod = _public_module(Path(models_py))
    torch.manual_seed(seed)
    cls = getattr(mod, "MSA_UNet_skip_level_connation", None) or getattr(mod, "CBPE_Net")
    pub = cls(in_channels=in_channels, deep_supervision=True).eval()
    state = _map_state(pub.state_dict())
    x = torch.randn(batch, in_channels, 88)
    rows = []
    with torch.no_grad():
        ref = [o.reshape(batch) for o in pub(x)]
        for pool in ("floor", "ceil"):
            ours = MSCACSSCUNet(in_channels=in_channels, window=88, pool=pool).eval()
            missing, unexpected = ours.load_state_dict(state, strict=False)
            if unexpected or [m for m in missing if "num_batches" not in m]:
                raise RuntimeError(f"weight names do not match: missing {missing[:5]}, unexpected {unexpected[:5]}")
            got = [o[:, 0, -1] for o in ours.forward_train(x)]
            rows.append({"pool": pool, "params_public": sum(p.numel() for p in pub.parameters()),
                         "params_edgebp": sum(p.numel() for p in ours.parameters()),
                         "max_abs_diff_per_head": [float((a - b).abs().max()) for a, b in zip(ref, got)],
                         "output_scale": float(torch.stack(ref).abs().max())})
    return rows


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models_py", type=Path, help="the public models.py")
    ap.add_argument("--in-channels", type=int, default=1, help="1: MSCA-CSSC-UNet (ECG); 2: CBPE-Net (ECG, PPG)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    for row in compare(args.models_py, args.in_channels):
        sys.stdout.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
