"""The training loop: AdamW + EMA + clipping + LR schedule, validation, checkpoints, DDP.

Entry point: :func:`train`. Run it in one process, or the same script under
``torchrun --nproc_per_node N`` for data parallelism (NCCL on GPU, gloo on CPU).

Reproducibility: every random stream is a pure function of ``config.seed`` -- model init (same on
all ranks), data order (seed, epoch), and the diffusion noise and global RNG (seed, rank, step, reseeded
every step). Resuming from ``checkpoints/last`` therefore continues bit for bit on the same
hardware and software: weights, AdamW moments and EMA are restored exactly and the data position is
recomputed from the step.

Output folder::

    out_dir/train_config.json      resolved TrainConfig
    out_dir/train.csv, val.csv     logs (plus out_dir/tb/ when tensorboard is installed)
    out_dir/checkpoints/last/      resumable checkpoint (EMA inference weights + training state)
    out_dir/checkpoints/best/      EMA weights with the lowest validation MAE (ready for load_model)

The checkpoints' cards record, under ``provenance``, the hardware (:func:`training_hardware`), the wall
time spent training (``train_seconds``, summed over resumed sessions) and which data were read
(``datasets``: :func:`dataset_identity`).
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
import warnings
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, IterableDataset

from chromaqpi.errors import ChromaQPIError, ConfigError
from chromaqpi.models.registry import build_model, load_weights_into, model_config, normalise_input
from chromaqpi.models.unet import condition_from_batch
from chromaqpi.training.checkpoint import (
    atomic_write_json, find_checkpoint, load_training_checkpoint, make_card, read_card, save_model,
    save_training_checkpoint,
)
from chromaqpi.training.config import TrainConfig
from chromaqpi.training.distributed import (
    DistInfo, all_reduce_sum, barrier, default_device, derive_seed, init_distributed, shutdown, wrap_ddp,
)
from chromaqpi.training.ema import EMA


@dataclass
class TrainResult:
    """Outcome of :func:`train`.

    Attributes
    ----------
    step : int
        Global step reached.
    best_step : int or None
        Step of the best validation MAE (None without validation).
    best_val_mae : float or None
        Best offset-aligned validation MAE in radians.
    out_dir : Path
    last_checkpoint : Path
        Resumable checkpoint (``checkpoints/last``).
    best_checkpoint : Path or None
        Best EMA weights (``checkpoints/best``), when validation ran.
    """

    step: int
    best_step: int | None
    best_val_mae: float | None
    out_dir: Path
    last_checkpoint: Path
    best_checkpoint: Path | None


# ---------------------------------------------------------------- small pure pieces


def lr_at(step: int, config: TrainConfig) -> float:
    """Learning rate of optimiser step ``step`` (0-based): linear warm-up, then cosine or constant."""
    s, base = config.schedule, config.optim.lr
    if step < s.warmup_steps:
        return base * (step + 1) / s.warmup_steps
    if s.lr_schedule == "constant":
        return base
    progress = min(1.0, (step - s.warmup_steps) / max(1, s.steps - s.warmup_steps))
    return base * (s.min_lr_ratio + (1 - s.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def aligned_mae(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image MAE after removing the unrecoverable phase offset, and raw MAE.

    The offset is ``median(target - pred)`` per image and channel, the L1-optimal constant
    (PHYSICS.md 7); :func:`chromaqpi.metrics.mae` computes it when that module is installed.

    Parameters
    ----------
    pred, target : torch.Tensor
        (B, ...) phases in radians.

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        Aligned and raw MAE, each (B,) in radians.
    """
    batch = pred.shape[0]
    try:
        from chromaqpi import metrics
    except ImportError:  # metrics module absent: same definition, computed here
        diff = (target - pred).flatten(1).double()
        offset = diff.median(dim=1, keepdim=True).values
        return (diff - offset).abs().mean(dim=1), diff.abs().mean(dim=1)
    aligned = metrics.mae(pred, target, align="median").reshape(batch, -1).mean(dim=1)
    return aligned, metrics.mae(pred, target, align="none").reshape(batch, -1).mean(dim=1)


def _prepare(batch: dict, device: torch.device, config: TrainConfig) -> dict:
    """Move tensors to ``device`` and normalise the input exactly as inference will (model card)."""
    batch = {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}
    batch["input"] = normalise_input(batch["input"].float(), config.input_normalisation)
    return batch


def _uses_bf16(device: torch.device, precision: str) -> bool:
    # bf16 autocast only on CUDA: on CPU it is slow and changes numerics for no gain.
    return device.type == "cuda" and precision in ("auto", "bf16")


def _autocast(device: torch.device, precision: str):
    return torch.autocast("cuda", dtype=torch.bfloat16) if _uses_bf16(device, precision) else nullcontext()


class _LossModule(nn.Module):
    """Puts ``model.loss_terms`` behind ``forward`` so DistributedDataParallel can wrap it."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: dict, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return self.model.loss_terms(batch, generator=generator)


# ---------------------------------------------------------------- data


def _per_rank(batch_size: int, info: DistInfo) -> int:
    if batch_size % info.world_size:
        raise ConfigError(f"batch size {batch_size} is not divisible by the {info.world_size} ranks")
    return batch_size // info.world_size


def _train_batches(dataset: Dataset, config: TrainConfig, info: DistInfo, start_step: int) -> Iterator[tuple[int, dict]]:
    """Endless (epoch, batch) stream for this rank, positioned at ``start_step``."""
    per_rank = _per_rank(config.data.batch_size, info)
    workers = config.data.num_workers
    if isinstance(dataset, IterableDataset):
        # No indices to skip: replay and discard (bit-exact only if the dataset is deterministic).
        epoch, seen = 0, 0
        while True:
            for batch in DataLoader(dataset, batch_size=per_rank, num_workers=workers, drop_last=True):
                seen += 1
                if seen > start_step:
                    yield epoch, batch
            epoch += 1
    sampler = DistributedSampler(dataset, num_replicas=info.world_size, rank=info.rank,
                                 shuffle=config.data.shuffle, seed=config.seed, drop_last=True)
    per_epoch = len(sampler) // per_rank
    if per_epoch == 0:
        raise ConfigError(f"training set ({len(dataset)} samples) is smaller than one global batch")
    epoch, offset = divmod(start_step, per_epoch)
    while True:
        sampler.set_epoch(epoch)
        if hasattr(dataset, "set_epoch"):  # e.g. ShardDataset: per-epoch crops and flips
            dataset.set_epoch(epoch)
        indices = list(sampler)[offset * per_rank: per_epoch * per_rank]
        loader_gen = torch.Generator().manual_seed(derive_seed(config.seed, "loader", info.rank, epoch))
        loader = DataLoader(dataset, batch_size=per_rank, sampler=indices, num_workers=workers,
                            drop_last=True, generator=loader_gen)
        for batch in loader:
            yield epoch, batch
        epoch, offset = epoch + 1, 0


# ---------------------------------------------------------------- logging


class _RunLog:
    """CSV (+ TensorBoard) logs and the progress bar; active on rank 0 only."""

    def __init__(self, out_dir: Path, info: DistInfo, config: TrainConfig, start: int, end: int):
        self.active, self.tb, self.bar = info.is_main, None, None
        if not self.active:
            return
        self.paths = {"train": out_dir / "train.csv", "val": out_dir / "val.csv"}
        for path in self.paths.values():
            _truncate_csv(path, start)  # drop rows logged after the checkpoint we resume from
        if config.logging.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out_dir / "tb"), purge_step=start or None)
            except ImportError:
                self.tb = None
        from tqdm.auto import tqdm

        self.bar = tqdm(total=end, initial=start, unit="step", dynamic_ncols=True,
                        disable=not config.logging.progress, desc="train")

    def row(self, kind: str, values: dict) -> None:
        if not self.active:
            return
        _append_csv(self.paths[kind], values)
        if self.tb is not None:
            for key, value in values.items():
                if key != "step" and isinstance(value, (int, float)):
                    self.tb.add_scalar(f"{kind}/{key}", value, values["step"])

    def progress(self, n: int, **postfix) -> None:
        if self.bar is not None:
            self.bar.update(n)
            if postfix:
                self.bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.tb is not None:
            self.tb.close()


def _truncate_csv(path: Path, max_step: int) -> None:
    if not path.is_file():
        return
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
        fields = list(rows[0].keys()) if rows else None
    keep = [r for r in rows if int(r["step"]) <= max_step]
    if fields is None or not keep:
        path.unlink()
        return
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(keep)


def _append_csv(path: Path, values: dict) -> None:
    new = not path.is_file() or path.stat().st_size == 0
    if not new:
        with open(path, newline="") as f:
            fields = next(csv.reader(f))
    else:
        fields = list(values)
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow(values)


# ---------------------------------------------------------------- validation


@torch.no_grad()
def validate(model: nn.Module, dataset: Dataset, config: TrainConfig, info: DistInfo | None = None,
             device: torch.device | str = "cpu") -> dict[str, float]:
    """Offset-aligned and raw MAE (radians) of ``model.predict`` over a validation set.

    Diffusion models draw one DDIM sample with ``validation.sampler_steps`` steps from a generator
    seeded by (validation seed, rank, batch index). Under DDP each rank scores its shard and the
    sums are reduced (the distributed sampler pads the set to a multiple of the world size).

    Returns
    -------
    dict
        ``{"mae_rad", "mae_raw_rad", "images"}``, plus ``"mean_mae_rad"`` (aligned MAE of the
        mean network alone) for ZMD.
    """
    info, device, v = info or DistInfo(), torch.device(device), config.validation
    per_rank = max(1, (v.batch_size or config.data.batch_size) // info.world_size)
    sampler = None
    if not isinstance(dataset, IterableDataset):
        sampler = DistributedSampler(dataset, num_replicas=info.world_size, rank=info.rank, shuffle=False)
    loader = DataLoader(dataset, batch_size=per_rank, sampler=sampler, num_workers=config.data.num_workers)
    was_training = model.training
    model.eval()
    # ZMD also reports its mean network alone: the diffusion branch must improve on it.
    mean_net = getattr(model, "mean", None)
    sums = torch.zeros(4, dtype=torch.float64, device=device)
    for i, batch in enumerate(loader):
        if v.max_batches and i >= v.max_batches:
            break
        batch = _prepare(batch, device, config)
        gen = torch.Generator(device=device).manual_seed(derive_seed(v.seed, info.rank, i))
        x, y = condition_from_batch(batch), batch["target"].float()
        with _autocast(device, config.precision):
            pred = model.predict(x, steps=v.sampler_steps, generator=gen, sampler=v.sampler)
            mu = mean_net(x) if mean_net is not None else None
        aligned, raw = aligned_mae(pred.float(), y)
        mu_sum = aligned_mae(mu.float(), y)[0].sum() if mu is not None else torch.zeros((), device=device)
        sums += torch.stack([aligned.sum(), raw.sum(), mu_sum, torch.tensor(float(len(aligned)), device=device)])
    model.train(was_training)
    all_reduce_sum(sums, info)
    n = max(sums[3].item(), 1.0)
    out = {"mae_rad": sums[0].item() / n, "mae_raw_rad": sums[1].item() / n, "images": int(sums[3].item())}
    if mean_net is not None:
        out["mean_mae_rad"] = sums[2].item() / n
    return out


@torch.no_grad()
def residual_rms(mean_model: nn.Module, dataset: Dataset, config: TrainConfig, *, max_batches: int = 0,
                 device: torch.device | str = "cpu") -> float:
    """RMS of ``Y - mu(X)`` in radians over a dataset: the value to use for ZMD's ``sigma_zmd``.

    Parameters
    ----------
    mean_model : torch.nn.Module
        A trained mean model (or a ZMD model, whose ``.mean`` is used).
    dataset : Dataset
        Validation pairs, normalised with ``config.input_normalisation`` like training.
    config : TrainConfig
        For the batch size and input normalisation.
    max_batches : int
        Stop after this many batches (0: all).
    device : torch.device or str
    """
    net = getattr(mean_model, "mean", mean_model).eval()
    device, total, count = torch.device(device), 0.0, 0
    for i, batch in enumerate(DataLoader(dataset, batch_size=config.data.batch_size)):
        if max_batches and i >= max_batches:
            break
        batch = _prepare(batch, device, config)
        err = batch["target"].float() - net(condition_from_batch(batch)).float()
        total, count = total + float((err.double() ** 2).sum()), count + err.numel()
    return math.sqrt(total / max(count, 1))


# ---------------------------------------------------------------- the loop


def train(
    config: TrainConfig, train_dataset: Dataset, val_dataset: Dataset | None = None,
    out_dir: str | Path = "runs/train", *, resume: bool | str | Path = False, until_step: int | None = None,
) -> TrainResult:
    """Train a model described by ``config`` and write checkpoints and logs to ``out_dir``.

    Parameters
    ----------
    config : TrainConfig
        Model, optimiser, schedule, data, validation and logging settings.
    train_dataset : torch.utils.data.Dataset or IterableDataset
        Yields dicts ``{"input": (C, H, W) float, "target": (1, H, W) phase [rad]}`` plus optional
        ``"condition": (Cc, H, W)`` planes stacked after the input (other keys are ignored). The
        input is normalised with ``config.input_normalisation`` (the mode recorded in the card).
        Map-style datasets are sharded with a DistributedSampler (``set_epoch`` is called on the
        dataset too when it has one); iterable ones must shard themselves by rank and are replayed
        up to the resume position.
    val_dataset : Dataset, optional
        Held-out set for periodic validation and best-checkpoint selection (by aligned MAE).
    out_dir : str or Path
        Run folder (see the module docstring for its layout).
    resume : bool or path
        True: continue from ``out_dir/checkpoints/last``; a path: continue from that checkpoint.
        False refuses to overwrite an existing run.
    until_step : int, optional
        Stop (after checkpointing) once this global step is reached, without changing the schedule,
        e.g. for time-limited jobs; ``config.schedule.steps`` otherwise.

    Returns
    -------
    TrainResult

    Raises
    ------
    ConfigError
        Invalid config, nothing to resume, an existing run without ``resume``, or a resumed run whose
        model config differs.
    WeightsError
        A resume checkpoint that is corrupt or does not fit the model.
    """
    config.validate()
    # Subnormal floats (e.g. in Adam's second moments) make CPU arithmetic
    # 5-30x slower; flushing them to zero changes no result that matters.
    torch.set_flush_denormal(True)
    info = init_distributed(config.device)
    try:
        return _train(config, train_dataset, val_dataset, Path(out_dir), resume, until_step, info)
    finally:
        shutdown(info)


class TrainingDiverged(ChromaQPIError, FloatingPointError):
    """The loss became NaN/Inf (a user setting, usually the learning rate: a one-line CLI error)."""


def _resume_source(resume, last_dir: Path, config: TrainConfig) -> Path | None:
    if resume is False or resume is None:
        run = last_dir.parent.parent
        held = [p for p in (last_dir, last_dir.parent / "best", run / "train_config.json") if p.exists()]
        if held:  # a fresh start would overwrite that run's checkpoints and logs
            raise ConfigError(f"{run} holds a training run ({held[0].relative_to(run)}): continue it with --resume "
                              "(resume=True), or choose a new --out")
        return None
    source = find_checkpoint(last_dir if resume is True else Path(resume))
    if source is None:
        raise ConfigError(f"nothing to resume: no checkpoint at {last_dir if resume is True else resume}")
    card = read_card(source)
    if card["model"] != model_config(build_model(config.model)):
        raise ConfigError(f"model config of {source} differs from the requested one; refusing to resume")
    # A resumed run continues the same run: other data or another family is a new stage (--init-from).
    family = (card.get("microscope") or {}).get("family")
    for key, had, wanted in (("microscope family", family, (config.microscope or {}).get("family")),
                             ("input_normalisation", card.get("input_normalisation"), config.input_normalisation),
                             ("data", card.get("data"), config.data.description)):
        if json.loads(json.dumps(had)) != json.loads(json.dumps(wanted)):
            raise ConfigError(f"{key} of {source} ({had}) differs from this run's ({wanted}); "
                              "--resume continues the same run: start a new stage with --init-from instead")
    return source


def _train(config, train_dataset, val_dataset, out_dir, resume, until_step, info) -> TrainResult:
    started = time.monotonic()
    device = default_device(info, config.device)
    torch.backends.cuda.matmul.allow_tf32 = False  # exact fp32 where bf16 is not requested
    torch.backends.cudnn.allow_tf32 = False
    last_dir, best_dir = out_dir / "checkpoints" / "last", out_dir / "checkpoints" / "best"
    source = _resume_source(resume, last_dir, config)
    torch.manual_seed(derive_seed(config.seed, "init"))  # identical initial weights on every rank
    model = build_model(config.model)
    if source is None and config.init_from:
        _init_weights(model, config.init_from, config)
    model = model.to(device)
    ema = EMA(model, decay=config.optim.ema_decay)
    o = config.optim
    optimizer = torch.optim.AdamW(model.parameters(), lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay)
    state = {"step": 0, "epoch": 0, "best_val_mae": None, "best_step": None, "seed": config.seed,
             "train_seconds": 0.0}
    if source is not None:
        saved = load_training_checkpoint(source, model=model, ema=ema, optimizer=optimizer)
        if "train_seconds" not in saved and saved.get("step"):  # saved before runs were timed
            saved["train_seconds_from_step"] = saved["step"]
        state.update(saved)
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out_dir / "train_config.json", config.to_dict())
    net = wrap_ddp(_LossModule(model), info, device)
    end = config.schedule.steps if until_step is None else min(until_step, config.schedule.steps)
    log = _RunLog(out_dir, info, config, state["step"], end)
    datasets = {"train": dataset_identity(train_dataset), "val": dataset_identity(val_dataset)}
    if source is not None and info.is_main:
        _warn_changed_data(source, datasets)
    ctx = _StepContext(config, info, device, net, model, optimizer, ema, datasets, started, state["train_seconds"])
    try:
        _loop(ctx, state, end, train_dataset, val_dataset, log, last_dir, best_dir)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM from a scheduler (the CLI turns it into this)
        if info.is_main and state["step"] > 0:  # keep the work: --resume continues from here
            _save_last(ctx, state, last_dir, _card_kw(ctx))
        raise
    finally:
        log.close()
    best = best_dir if state["best_step"] is not None else None
    return TrainResult(state["step"], state["best_step"], state["best_val_mae"], out_dir, last_dir, best)


def _init_weights(model: nn.Module, name_or_path: str, config: TrainConfig) -> None:
    """Copy a trained model's (EMA) weights into ``model``; names and shapes must match, and the
    network must read the same input: its physics prior and input normalisation."""
    from chromaqpi.models.registry import input_normalisation_mode, load_model

    source = load_model(name_or_path)
    card = getattr(source, "card", {}) or {}
    prior, wanted = card.get("model", {}).get("prior"), config.model.get("prior")
    if prior != wanted:
        raise ConfigError(f"init_from {name_or_path} was trained with prior {prior!r}, this run has {wanted!r}: "
                          "its first layer would read another input (set the same prior)")
    had, wants = (input_normalisation_mode(c) for c in (card.get("input_normalisation"), config.input_normalisation))
    if had != wants:
        warnings.warn(f"init_from {name_or_path} was trained on {had!r}-normalised inputs, this run uses {wants!r}: "
                      "it starts from weights tuned to other input values", UserWarning)
    load_weights_into(model, source.state_dict(), source=f"init_from {name_or_path}")


@dataclass
class _StepContext:
    config: TrainConfig
    info: DistInfo
    device: torch.device
    net: nn.Module
    model: nn.Module
    optimizer: torch.optim.Optimizer
    ema: EMA
    datasets: dict  # {"train": ..., "val": ...}: dataset_identity of each
    started: float  # time.monotonic() when this session began
    seconds_before: float  # training wall time of the sessions this one resumes

    def train_seconds(self) -> float:
        """Wall time of the run so far (s), over all its sessions."""
        return self.seconds_before + time.monotonic() - self.started


def _train_step(ctx: _StepContext, batch: dict, step: int, generator: torch.Generator):
    """One optimiser step; returns (mean loss terms as a tensor dict, gradient norm)."""
    cfg, model = ctx.config, ctx.model
    for group in ctx.optimizer.param_groups:
        group["lr"] = lr_at(step, cfg)
    batch = _prepare(batch, ctx.device, cfg)
    generator.manual_seed(derive_seed(cfg.seed, "loss", ctx.info.rank, step))
    torch.manual_seed(derive_seed(cfg.seed, "global", ctx.info.rank, step))  # e.g. dropout
    with _autocast(ctx.device, cfg.precision):
        terms = ctx.net(batch, generator)
    loss = terms["loss"].float().mean()
    if not torch.isfinite(loss):
        raise TrainingDiverged(f"non-finite training loss at step {step}: lower --lr (optim.lr) or check the "
                               "data; --resume continues from the last checkpoint")
    ctx.optimizer.zero_grad(set_to_none=True)
    loss.backward()  # DDP averages gradients over ranks here
    clip = cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else float("inf")
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    ctx.optimizer.step()
    ctx.ema.update(model)
    return {k: v.detach().float().mean() for k, v in terms.items()}, grad_norm.detach()


def _loop(ctx: _StepContext, state: dict, end: int, train_ds, val_ds, log: _RunLog, last_dir: Path, best_dir: Path):
    cfg, info = ctx.config, ctx.info
    card_kw = _card_kw(ctx)
    batches = _train_batches(train_ds, cfg, info, state["step"])
    generator = torch.Generator(device=ctx.device)
    t_last, n_last = time.perf_counter(), state["step"]
    while state["step"] < end:
        epoch, batch = next(batches)
        terms, grad_norm = _train_step(ctx, batch, state["step"], generator)
        state["step"], state["epoch"] = state["step"] + 1, epoch
        step = state["step"]
        if step % cfg.logging.log_every == 0 or step == end:
            now = time.perf_counter()
            rate = (step - n_last) * cfg.data.batch_size / max(now - t_last, 1e-9)
            means = _reduce_terms(terms, info)
            log.row("train", {"step": step, "epoch": epoch, "lr": lr_at(step - 1, cfg), **means,
                              "grad_norm": float(grad_norm), "samples_per_s": rate})
            log.progress(step - n_last, loss=means["loss"], lr=lr_at(step - 1, cfg))
            t_last, n_last = now, step
        if val_ds is not None and ((cfg.validation.every and step % cfg.validation.every == 0) or step == end):
            _validate_and_keep_best(ctx, state, val_ds, log, best_dir, card_kw)
        if step % cfg.logging.checkpoint_every == 0 or step == end:
            if info.is_main:
                _save_last(ctx, state, last_dir, card_kw)
            barrier(info)


def _card_kw(ctx: "_StepContext") -> dict:
    cfg = ctx.config
    return {"microscope": cfg.microscope, "input_normalisation": cfg.input_normalisation,
            "data": cfg.data.description, "hardware": training_hardware(ctx.device, ctx.info, cfg.precision),
            "datasets": ctx.datasets}


def _timing(ctx: "_StepContext", state: dict) -> dict:
    """The card's record of the training wall time (s); ``train_seconds_from_step`` when the run was
    resumed from a checkpoint that did not record it (the time before that step is missing)."""
    out = {"train_seconds": round(ctx.train_seconds(), 1)}
    if state.get("train_seconds_from_step"):
        out["train_seconds_from_step"] = state["train_seconds_from_step"]
    return out


def _save_last(ctx: "_StepContext", state: dict, last_dir: Path, card_kw: dict) -> None:
    state["train_seconds"] = ctx.train_seconds()
    card = make_card(ctx.model, **card_kw, provenance={"step": state["step"], "best_val_mae_rad": state["best_val_mae"],
                                                       **_timing(ctx, state)})
    save_training_checkpoint(last_dir, model=ctx.model, ema=ctx.ema, optimizer=ctx.optimizer,
                             card=card, loop_state=dict(state))


def training_hardware(device: torch.device, info: DistInfo, precision: str) -> dict:
    """What a run trains on, for its model card: device kind and name (CUDA device or CPU model), processes
    (DDP ranks), precision, CPU threads; on CUDA also the CUDA version and the host CPU (the card records
    the torch version already)."""
    cuda = device.type == "cuda"
    out = {"device": device.type, "name": torch.cuda.get_device_name(device) if cuda else cpu_name(),
           "processes": info.world_size, "precision": "bf16" if _uses_bf16(device, precision) else "fp32",
           "cpu_threads": torch.get_num_threads(), "cpu_count": os.cpu_count()}
    if cuda:
        out.update(cuda_version=torch.version.cuda, cpu=cpu_name())
    return out


def cpu_name() -> str:
    """The CPU model (e.g. "AMD EPYC 7763 64-Core Processor"); the architecture where it is not known."""
    import platform

    try:
        with open("/proc/cpuinfo") as f:  # Linux: platform.processor() is empty there
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _warn_changed_data(source: Path, datasets: dict) -> None:
    """Warn when a resumed run reads data folders whose manifests differ from those its checkpoint
    recorded (rebuilt with other settings, or edited): the same folder names then hold other samples."""
    recorded = ((read_card(source).get("provenance") or {}).get("datasets") or {})
    for split, now in datasets.items():
        before = recorded.get(split)
        if not before or not now:  # not recorded (an older checkpoint) or not folders
            continue
        changed = [n["folder"] for b, n in zip(before, now, strict=False)
                   if b.get("manifest_sha256") != n.get("manifest_sha256")]
        if changed:
            warnings.warn(f"--resume: the {split} data {', '.join(changed)} changed since {source} was saved "
                          "(another manifest sha256): the run continues on different samples", stacklevel=3)


def dataset_identity(dataset) -> list[dict] | None:
    """Which data a run reads, for its model card: per dataset folder its path, manifest sha256 and
    sample count (datasets with an ``identity()`` method, e.g.
    :class:`~chromaqpi.datasets.torch_data.ShardDataset`); None for others (simulated, in memory)."""
    identity = getattr(dataset, "identity", None)
    return identity() if callable(identity) else None


def _reduce_terms(terms: dict[str, torch.Tensor], info: DistInfo) -> dict[str, float]:
    keys = sorted(terms)
    values = all_reduce_sum(torch.stack([terms[k] for k in keys]).double(), info) / info.world_size
    return dict(zip(keys, values.tolist(), strict=True))


def _validate_and_keep_best(ctx, state, val_ds, log, best_dir, card_kw) -> None:
    metrics = validate(ctx.ema.module, val_ds, ctx.config, ctx.info, ctx.device)
    step = state["step"]
    improved = state["best_val_mae"] is None or metrics["mae_rad"] < state["best_val_mae"]
    if improved:
        state["best_val_mae"], state["best_step"] = metrics["mae_rad"], step
        if ctx.info.is_main:
            save_model(best_dir, ctx.ema.module,
                       make_card(ctx.model, **card_kw, provenance={"step": step, "val_mae_rad": metrics["mae_rad"],
                                                                   "val_mae_raw_rad": metrics["mae_raw_rad"],
                                                                   **_timing(ctx, state)}))
    log.row("val", {"step": step, **metrics, "best": int(improved)})
    barrier(ctx.info)


# ---------------------------------------------------------------- benchmark helper


def measure_train_throughput(model: nn.Module, batch: dict, *, steps: int = 5, warmup: int = 2,
                             lr: float = 1e-4, seed: int = 0) -> float:
    """Training samples per second of ``model`` on one fixed batch (forward, backward, AdamW, EMA).

    The model is trained in place (pass a copy). Tensors of ``batch`` must already be on the
    model's device; CUDA is synchronised around the timed steps.
    """
    device = next(model.parameters()).device
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    ema, gen = EMA(model), torch.Generator(device=device).manual_seed(seed)

    def step():
        loss = model.loss(batch, generator=gen).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        ema.update(model)

    model.train()
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return steps * batch["input"].shape[0] / (time.perf_counter() - start)
