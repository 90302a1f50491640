"""The training loop: AdamW or Adam, one-cycle / step / no schedule, accumulation, clipping, early
stopping, AMP on CUDA, deterministic seeds, checkpoints, resume, and DDP under torchrun (rank 0
writes; docs/training.md). What each recipe sets: :mod:`edgebp.train.recipes`."""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

import edgebp
from edgebp.record_identity import split_with_identity
from edgebp.train.config import TrainConfig
from edgebp.train.data import PreparedRecord, data_source_path, dataset_prepare, norm_stats_fit, stderr_progress, windows_index
from edgebp.train.splits import records_group, split_groups
from edgebp.train.zoo import model_build, model_spec

log = logging.getLogger(__name__)


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def dist_setup(device: str) -> DistInfo:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistInfo(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def device_pick(choice: str, local_rank: int = 0) -> str:
    if choice == "auto":
        return f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    if choice == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device: cuda requested but no CUDA device is available (use --device cpu)")
        return f"cuda:{local_rank}"
    return "cpu"


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


class WindowDataset(Dataset):
    """Windows of (inputs, target, loss mask) cut from prepared records."""

    def __init__(self, prepared: list[PreparedRecord], index: np.ndarray, window: int, output: str, norm: dict, delay: int = 0, warmup: int = 0):
        self.prepared, self.index, self.window = prepared, index, window
        self.output, self.norm, self.delay, self.warmup = output, norm, delay, warmup

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, k: int):
        r, s = self.index[k]
        p = self.prepared[r]
        W = self.window
        x = np.nan_to_num(p.X[:, s : s + W]).astype(np.float32)
        if self.output == "values":
            from edgebp.processing.beats import abp_beats

            seg = np.where(p.usable[s : s + W], p.abp[s : s + W], np.nan).astype(np.float64)
            b = abp_beats(seg, p.fs)
            v = np.asarray(b.valid, bool)
            if v.any():
                sbp, dbp = float(np.median(np.asarray(b.sbp)[v])), float(np.median(np.asarray(b.dbp)[v]))
                y = np.array([(sbp - self.norm["sbp_mean"]) / self.norm["sbp_std"], (dbp - self.norm["dbp_mean"]) / self.norm["dbp_std"]], np.float32)
                m = np.ones(2, np.float32)
            else:
                y, m = np.zeros(2, np.float32), np.zeros(2, np.float32)
            return x, y, m
        # point-wise target: the model's output at t estimates ABP at t - delay
        a = s - self.delay
        tgt = p.abp[max(a, 0) : a + W]
        use = p.usable[max(a, 0) : a + W]
        if a < 0:
            tgt = np.concatenate([np.zeros(-a, np.float32), tgt])
            use = np.concatenate([np.zeros(-a, bool), use])
        y = ((tgt - self.norm["abp_mean"]) / self.norm["abp_std"]).astype(np.float32)[None, :]
        m = use.astype(np.float32)[None, :]
        m[:, : self.warmup] = 0.0
        return x, np.nan_to_num(y), m


def _masked_l1(pred: torch.Tensor, y: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    return (torch.abs(pred - y) * m).sum() / m.sum().clamp_min(1.0)


def _masked_mse(pred: torch.Tensor, y: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    return ((pred - y) ** 2 * m).sum() / m.sum().clamp_min(1.0)


class TrainView(torch.nn.Module):
    """The model's training outputs as its ``forward``: a list of deep-supervision heads
    (``forward_train``), an ``(abp, gradient)`` tuple (``forward_full``) or the output.

    DistributedDataParallel wraps this view, so its gradient all-reduce is prepared by the
    very forward the loss uses (calling ``ddp.module.forward_train`` would bypass it)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor):
        if hasattr(self.model, "forward_train"):
            return list(self.model.forward_train(x))
        if hasattr(self.model, "forward_full"):
            return tuple(self.model.forward_full(x))
        return self.model(x)


def loss_from_outputs(outs, model, y: torch.Tensor, m: torch.Tensor, kind: str = "l1") -> torch.Tensor:
    """The loss of :class:`TrainView` outputs; see :func:`loss_compute`."""
    if isinstance(outs, tuple):  # INN-PAR: ABP and its gradient
        err = _masked_mse if kind == "mse" else _masked_l1
        abp, grad = outs
        # the target gradient by the same fixed [-1, 0, 1] kernel the model uses for its input
        gy = torch.nn.functional.pad(y, (1, 1), mode="replicate")
        gy = gy[..., 2:] - gy[..., :-2]
        gm = m * torch.nn.functional.pad(m, (1, 1))[..., 2:] * torch.nn.functional.pad(m, (1, 1))[..., :-2]
        return err(abp, y, m) + err(grad, gy, gm)
    heads = outs if isinstance(outs, list) else [outs]
    weights = list(getattr(model, "deep_supervision_weights", [1.0] * len(heads))) if len(heads) > 1 else [1.0]
    if kind == "mse-last":
        # the public loop: loss = sum_i w_i * MSE(head_i[..., -1], abp[t_last]), not normalised
        yl, ml = y[..., -1:], m[..., -1:]
        return sum(w * _masked_mse(o[..., -1:], yl, ml) for o, w in zip(heads, weights))
    err = _masked_mse if kind == "mse" else _masked_l1
    return sum(w * err(o, y, m) for o, w in zip(heads, weights)) / sum(weights)


def loss_compute(model, x, y, m, name: str, kind: str = "l1") -> torch.Tensor:
    """The model's training loss (deep supervision for the UNets, ABP + gradient for INN-PAR).

    ``kind`` (``TrainConfig.loss``): ``"l1"`` masked L1 over the window or the (SBP, DBP) pair,
    deep-supervision terms averaged with their weights (the edge recipe); ``"mse"`` the same
    with squared errors; ``"mse-last"`` MSE on the window's last sample only, the weighted
    deep-supervision terms summed, as the UNets' public ``train_and_test.py`` does.
    """
    return loss_from_outputs(TrainView(model)(x), model, y, m, kind)


def model_geometry(model, name: str, cfg: TrainConfig) -> tuple[int, int, int]:
    """(training window, causal warm-up samples, delay) for a model."""
    spec = model_spec(name)
    delay = int(getattr(model, "delay", spec.delay) or 0)
    if spec.causal and spec.output == "waveform":
        rf = int(getattr(model, "receptive_field", 0) or 0)
        window = int(round(cfg.window_s * cfg.fs))
        window = max(window, 2 * rf)
        return window, rf, delay
    return int(getattr(model, "window", spec.window)), 0, delay


def _split_records(prepared: list[PreparedRecord], cfg: TrainConfig) -> dict:
    """Names per split, ``identity`` (name and samples sha256 of each: how evaluation knows a
    training record under any path or name) and the patient groups."""
    ids = [p.record_id for p in prepared]
    synthetic = all(p.record_id.startswith("synth-") for p in prepared)
    groups = ids if synthetic else records_group(ids, [p.median_map for p in prepared])
    # a reader that knows the subject (PulseDB segments, MIMIC-III pXXXXXX records) says so with a
    # subject_id other than the record id: those records split by subject, never one subject in two
    groups = [p.subject_id if p.subject_id and p.subject_id != p.record_id else g for p, g in zip(prepared, groups)]
    idx = split_groups(groups, cfg.val_frac, cfg.test_frac, cfg.seed)
    names = {k: [ids[i] for i in v] for k, v in idx.items()}
    return split_with_identity(names, [p.identity for p in prepared]) | {"groups": dict(zip(ids, groups))}


def _progress_line(text: str, final: bool = False) -> None:
    if sys.stderr.isatty():
        sys.stderr.write("\r" + text.ljust(100) + ("\n" if final else ""))
    elif final:
        sys.stderr.write(text + "\n")
    sys.stderr.flush()


CHECKPOINT_KEYS = ("state_dict", "config", "meta", "norm", "split")


def checkpoint_load(path: str | Path, map_location: str = "cpu") -> dict:
    """An edgebp checkpoint (``best.pt``/``last.pt``) read with ``weights_only=True``; a file
    that is not one raises a one-line ValueError naming it (never torch's unpickling traceback)."""
    path = Path(path)
    try:
        ck = torch.load(path, map_location=map_location, weights_only=True)
    except (OSError, FileNotFoundError):
        raise
    except Exception as exc:  # noqa: BLE001 - torch raises UnpicklingError, RuntimeError, EOFError, zipfile errors...
        first = (str(exc).strip().splitlines() or [""])[0][:160]
        raise ValueError(f"{path}: not a readable edgebp checkpoint ({type(exc).__name__}: {first})") from None
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(ck, dict) or k not in ck]
    if missing:
        raise ValueError(f"{path}: not an edgebp checkpoint (missing {', '.join(missing)})")
    return ck


def _broadcast_object(obj, di: DistInfo):
    """Rank 0's ``obj`` on every rank (itself on a single process)."""
    if di.world <= 1:
        return obj
    box = [obj if di.main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 of every parameter and buffer, in state-dict order: equal on every DDP rank when
    the ranks trained the same model."""
    import hashlib

    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class PaddedRankSampler(torch.utils.data.Sampler):
    """This rank's own windows, shuffled per epoch, padded to ``total`` by repeating them.

    With ``ddp_split=records`` a rank reads only its own records, so ranks hold different
    numbers of windows; every rank must still run the same number of steps (each step is a
    collective gradient all-reduce: a rank that ran out would leave the others waiting for
    ever). The rank with fewer windows repeats some of its own (as DistributedSampler pads),
    so all ranks take the same optimizer steps and keep identical weights and optimizer state.
    """

    def __init__(self, n_local: int, total: int, seed: int, rank: int):
        self.n_local, self.total, self.seed, self.rank, self.epoch = int(n_local), int(total), int(seed), int(rank), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.total

    def __iter__(self):
        g = torch.Generator()
        g.manual_seed(self.seed * 1_000_003 + self.epoch * 101 + self.rank)
        order = torch.randperm(self.n_local, generator=g).tolist()
        reps = -(-self.total // max(self.n_local, 1))
        return iter((order * reps)[: self.total])


def _records_for_rank(prepared: list[PreparedRecord], index: np.ndarray, rank: int, world: int) -> list[int]:
    """Training records of ``rank`` (``ddp_split=records``): whole records, greedily balanced
    by their window counts (largest first onto the rank with fewest), deterministic."""
    counts = np.bincount(index[:, 0], minlength=len(prepared)) if len(index) else np.zeros(len(prepared), int)
    load = [0] * world
    mine = []
    for r in sorted(range(len(prepared)), key=lambda r: (-counts[r], r)):
        k = min(range(world), key=lambda j: (load[j], j))
        load[k] += int(counts[r])
        if k == rank:
            mine.append(r)
    return sorted(mine)


def train_run(cfg: TrainConfig, out_dir: Path, resume: bool = False, show_progress: bool = True) -> dict:
    """Train one model as ``cfg`` says and write the run directory; returns a summary dict.

    Under torchrun (``WORLD_SIZE > 1``) every rank runs this: rank 0's config is used by all,
    only rank 0 writes the run directory (and only rank 0 needs it: on ``resume`` rank 0 reads
    ``last.pt`` and broadcasts it), and the summary holds every rank's final weights digest.
    """
    from edgebp.train.data import minmax_fit
    from edgebp.train.recipes import run_model_kwargs

    out_dir = Path(out_dir)
    device = device_pick(cfg.device, int(os.environ.get("LOCAL_RANK", "0")))
    di = dist_setup(device)
    if di.world > 1:
        cfg = TrainConfig.from_dict(_broadcast_object(cfg.to_dict(), di), where="rank 0 config")
    seed_everything(cfg.seed)
    spec = model_spec(cfg.model)
    inputs = tuple(cfg.inputs) or tuple(spec.default_inputs)
    bad = [c for c in inputs if c not in spec.allowed_inputs]
    if bad:
        raise ValueError(f"inputs: {cfg.model} accepts {', '.join(spec.allowed_inputs)}, not {', '.join(bad)}")

    t0 = time.time()
    if di.main:
        # the first line says what bounds the run: the epochs or the wall-clock budget, whichever comes first
        log.info("training %s/%s with the %s recipe for at most %d epoch(s)%s", cfg.model, cfg.preset, cfg.recipe, cfg.epochs,
                 f" and at most {cfg.time_budget_s:g} s (time_budget_s: stops after the epoch that crosses it, "
                 "whichever comes first; --set time_budget_s=0 for no limit)" if cfg.time_budget_s else " (no time budget)")
    src = data_source_path(cfg.data, cfg.synth_subjects, cfg.synth_minutes, seed=cfg.seed)
    if di.main:
        log.info("preparing data from %s (inputs %s)", src, ",".join(inputs))
    bar = stderr_progress() if show_progress and di.main else None  # quiet when stderr is not a terminal
    # one rank per machine prepares (into the shared cache), the others then open its shards
    if di.world > 1 and di.local_rank != 0:
        dist.barrier()
    prepared, skipped = dataset_prepare(src, inputs, cfg.fs, cfg.max_minutes, chain_overrides=cfg.chain_overrides(inputs), progress=bar)
    if di.world > 1 and di.local_rank == 0:
        dist.barrier()
    if bar is not None:
        bar.done()
    if di.main:
        log.info("prepared %d record(s) in %.1f s (%d skipped)", len(prepared), time.time() - t0, len(skipped))
    if len(prepared) < 3:
        raise ValueError(f"{src}: only {len(prepared)} record(s) have usable {'+'.join(inputs)}+abp; need at least 3 for a subject-wise split")
    split = _split_records(prepared, cfg)
    by_id = {p.record_id: p for p in prepared}
    train_p = [by_id[i] for i in split["train"]]
    val_p = [by_id[i] for i in split["val"]]
    norm = norm_stats_fit(train_p)

    model = model_build(cfg.model, cfg.preset, in_channels=len(inputs), **run_model_kwargs(cfg))
    input_scale_meta = None
    if cfg.input_scale == "minmax":
        lo, hi = minmax_fit(train_p)  # the training records' extremes, never validation or test
        model.input_scale.set_range(lo, hi)
        input_scale_meta = {"mode": "minmax", "min": [float(v) for v in lo], "max": [float(v) for v in hi]}
        if di.main:
            log.info("input min-max from the %d training records: %s", len(train_p),
                     ", ".join(f"{c} {a:.4g}..{b:.4g}" for c, a, b in zip(inputs, lo, hi)))
    elif cfg.input_scale != "none":
        input_scale_meta = {"mode": cfg.input_scale}
    window, warmup, delay = model_geometry(model, cfg.model, cfg)
    if cfg.stride:
        stride = cfg.stride
    else:
        stride = max(1, int(round(cfg.stride_s * cfg.fs))) if spec.causal else max(1, window // 2)
    tr_idx = windows_index(train_p, window + delay, stride, cfg.max_windows_per_record, cfg.seed)
    va_cap = 0 if cfg.max_windows_per_record == 0 else max(50, cfg.max_windows_per_record // 4)
    va_idx = windows_index(val_p, window + delay, stride, va_cap, cfg.seed + 1)
    tr_idx[:, 1] += delay
    va_idx[:, 1] += delay
    if len(tr_idx) == 0 or len(va_idx) == 0:
        raise ValueError(f"{src}: no usable {window}-sample windows in the training or validation split")
    n_train_windows = len(tr_idx)
    per_rank_batch = max(1, cfg.batch_size // di.world)
    if di.world > 1 and cfg.ddp_split == "records":
        mine = _records_for_rank(train_p, tr_idx, di.rank, di.world)
        keep = np.isin(tr_idx[:, 0], mine)
        my_idx = tr_idx[keep]
        counts = torch.tensor([len(my_idx)], dtype=torch.int64)
        dist.all_reduce(counts, op=dist.ReduceOp.MAX)
        total = int(counts.item())
        if len(my_idx) == 0:
            raise ValueError(f"ddp_split=records: rank {di.rank} has no training record ({len(train_p)} records for {di.world} ranks); use ddp_split=windows")
        log.info("rank %d: %d training window(s) of %d record(s), padded to %d (the most any rank has) by repeating its own",
                 di.rank, len(my_idx), len(mine), total)
        train_ds = WindowDataset(train_p, my_idx, window, spec.output, norm, delay, warmup)
        sampler = PaddedRankSampler(len(my_idx), total, cfg.seed, di.rank)
    else:
        train_ds = WindowDataset(train_p, tr_idx, window, spec.output, norm, delay, warmup)
        sampler = DistributedSampler(train_ds, num_replicas=di.world, rank=di.rank, shuffle=True, seed=cfg.seed, drop_last=True)
    # validation: each rank scores its share; evaluate_loss sums over ranks
    val_ds = WindowDataset(val_p, va_idx[di.rank :: di.world] if di.world > 1 else va_idx, window, spec.output, norm, delay, warmup)

    model.to(device)
    loader = DataLoader(train_ds, batch_size=per_rank_batch, sampler=sampler, drop_last=True, num_workers=0)
    val_loader = DataLoader(val_ds, batch_size=max(64, per_rank_batch), shuffle=False, num_workers=0)
    if len(loader) == 0:
        # drop_last: fewer training windows than one batch would train nothing and still
        # save an untrained "best" model
        raise ValueError(f"{src}: no training batch: {n_train_windows} training window(s) of {window} samples, fewer than "
                         f"one batch of {per_rank_batch}; use more or longer records, or a smaller --set batch_size")
    view = TrainView(model)
    ddp_view = torch.nn.parallel.DistributedDataParallel(view) if di.world > 1 else view
    if cfg.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    # the last partial accumulation of an epoch steps too (as the UNets' public loop does)
    steps_per_epoch = max(1, -(-len(loader) // cfg.grad_accum))
    if cfg.schedule == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch, pct_start=0.15)
    elif cfg.schedule == "step":
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_size, gamma=cfg.gamma)
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _epoch: 1.0)
    per_step = cfg.schedule == "onecycle"
    use_amp = cfg.amp and device.startswith("cuda")
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    start_epoch, best_val, bad_epochs = 0, math.inf, 0
    if resume:
        ck = None
        if di.main and (out_dir / "last.pt").exists():
            ck = checkpoint_load(out_dir / "last.pt", map_location="cpu")
        ck = _broadcast_object(ck, di)  # the other ranks need no copy of the run directory
        if ck is not None:
            model.load_state_dict(ck["state_dict"])
            opt.load_state_dict(ck["optimizer"])
            sched.load_state_dict(ck["scheduler"])
            start_epoch, best_val, bad_epochs = ck["epoch"] + 1, ck["best_val"], ck["bad_epochs"]
            if di.main:
                log.info("resumed from %s at epoch %d", out_dir / "last.pt", start_epoch)

    if di.main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
        (out_dir / "split.json").write_text(json.dumps({**split, "skipped": skipped, "seed": cfg.seed, "unit": "record (treated as subject; likely same-patient records grouped)"}, indent=2))
        (out_dir / "norm.json").write_text(json.dumps(norm, indent=2))
    meta = {
        "edgebp_version": edgebp.__version__,
        "model": cfg.model,
        "preset": cfg.preset,
        "recipe": cfg.recipe,
        "inputs": list(inputs),
        "fs": cfg.fs,
        "window": window,
        "delay": delay,
        "warmup": warmup,
        "output": spec.output,
        "data_source": str(src) if cfg.data != "synth" else "synth",
    }
    if input_scale_meta is not None:
        meta["input_scale"] = input_scale_meta
    if cfg.loss == "mse-last":
        meta["target_index"] = -1  # trained on the window's last sample: score at hop 1
    params = sum(p.numel() for p in model.parameters())
    if di.main:
        log.info("model %s/%s: %d parameters; %d train / %d val windows of %d samples (stride %d); %d train, %d val, %d test records%s",
                 cfg.model, cfg.preset, params, n_train_windows, len(va_idx), window, stride, len(split["train"]), len(split["val"]),
                 len(split["test"]), f"; {di.world} ranks, split by {cfg.ddp_split}" if di.world > 1 else "")

    history = []
    metrics_f = out_dir / "metrics.jsonl"
    if di.main and not resume and metrics_f.exists():
        metrics_f.unlink()

    def _step() -> None:
        if cfg.clip_norm > 0:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        if per_step and sched.last_epoch + 1 < sched.total_steps:
            sched.step()

    for epoch in range(start_epoch, cfg.epochs):
        sampler.set_epoch(epoch)
        ddp_view.train()
        tot, cnt, te = 0.0, 0, time.time()
        opt.zero_grad(set_to_none=True)
        nb = len(loader)
        pending = False
        for b, (x, y, m) in enumerate(loader):
            x, y, m = x.to(device), y.to(device), m.to(device)
            with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=use_amp):
                loss = loss_from_outputs(ddp_view(x), model, y, m, cfg.loss)
            scaler.scale(loss / cfg.grad_accum).backward()
            pending = True
            if (b + 1) % cfg.grad_accum == 0:
                _step()
                pending = False
            tot += float(loss.detach()) * len(x)
            cnt += len(x)
            if show_progress and di.main:
                done = int(30 * (b + 1) / nb)
                _progress_line(f"epoch {epoch + 1}/{cfg.epochs} [{'=' * done}{' ' * (30 - done)}] {b + 1}/{nb} loss {tot / cnt:.4f}")
        if pending:  # same count of batches on every rank, so every rank steps here or none
            _step()
        if not per_step:
            sched.step()
        train_loss = tot / max(cnt, 1)
        if di.world > 1:
            t = torch.tensor([tot, cnt], dtype=torch.float64)
            dist.all_reduce(t)
            train_loss = float(t[0] / t[1])
        val_loss = evaluate_loss(model, val_loader, device, cfg.model, cfg.loss)
        rec = {"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss, "lr": opt.param_groups[0]["lr"], "seconds": round(time.time() - te, 2)}
        history.append(rec)
        improved = val_loss < best_val - 1e-6
        best_val = min(best_val, val_loss)
        bad_epochs = 0 if improved else bad_epochs + 1
        if di.main:
            with metrics_f.open("a") as f:
                f.write(json.dumps(rec) + "\n")
            if show_progress:
                _progress_line(f"epoch {epoch + 1}/{cfg.epochs} train {train_loss:.4f} val {val_loss:.4f}{' *' if improved else ''} ({rec['seconds']:.1f} s)", final=True)
            ck = {"state_dict": model.state_dict(), "config": cfg.to_dict(), "norm": norm, "split": {k: split[k] for k in ("train", "val", "test", "identity")}, "meta": meta, "epoch": epoch, "best_val": best_val, "bad_epochs": bad_epochs}
            if improved:
                torch.save(ck, out_dir / "best.pt")
            torch.save({**ck, "optimizer": opt.state_dict(), "scheduler": sched.state_dict()}, out_dir / "last.pt")
        if cfg.patience and bad_epochs >= cfg.patience:
            if di.main:
                log.info("early stop: no validation improvement for %d epochs", cfg.patience)
            break
        over = bool(cfg.time_budget_s and time.time() - t0 > cfg.time_budget_s)
        if di.world > 1:  # every rank must stop after the same epoch
            flag = torch.tensor([1.0 if over else 0.0])
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            over = bool(flag.item() > 0)
        if over:
            if di.main:
                log.warning("time budget of %.0f s reached after epoch %d of %d: stopping (--set time_budget_s=0 for no limit)",
                            cfg.time_budget_s, epoch + 1, cfg.epochs)
            break
    digests = [weights_digest(model)]
    if di.world > 1:
        digests = [None] * di.world
        dist.all_gather_object(digests, weights_digest(model))
        if di.main and len(set(digests)) != 1:
            log.error("the %d ranks ended with different weights (digests %s): report this as a bug", di.world, ", ".join(d[:12] for d in digests))
        dist.barrier()
    summary = {"run_dir": str(out_dir), "params": params, "epochs_run": len(history), "best_val_loss": best_val, "history": history,
               "seconds": round(time.time() - t0, 1), "world_size": di.world, "rank_weights_sha256": digests, **meta}
    if di.main:
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


@torch.no_grad()
def evaluate_loss(model, loader, device: str, name: str, kind: str = "l1") -> float:
    """Mean loss over ``loader``; under DDP summed over the ranks (each scores its own share)."""
    model.eval()
    tot, cnt = 0.0, 0
    for x, y, m in loader:
        x, y, m = x.to(device), y.to(device), m.to(device)
        tot += float(loss_compute(model, x, y, m, name, kind)) * len(x)
        cnt += len(x)
    model.train()
    if dist.is_initialized():
        t = torch.tensor([tot, cnt], dtype=torch.float64)
        dist.all_reduce(t)
        tot, cnt = float(t[0]), int(t[1])
    return tot / max(cnt, 1)
