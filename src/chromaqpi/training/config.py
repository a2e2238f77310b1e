"""Training configuration, split by concern (optimiser, LR schedule, data, validation, logging).

Every section is a dataclass; :meth:`TrainConfig.from_dict` rejects unknown keys, so a typo in a
TOML/JSON file fails loudly. The resolved config is written beside every run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from chromaqpi.datasets.seeds import check_seed
from chromaqpi.errors import ConfigError, WeightsError
from chromaqpi.models.registry import MODELS, config_from_dict, config_to_dict, input_normalisation_mode


def _valid_normalisation(spec) -> bool:
    try:
        input_normalisation_mode(spec)
    except WeightsError:
        return False
    return True


@dataclass
class OptimConfig:
    """AdamW, gradient clipping and weight averaging.

    Attributes
    ----------
    lr : float
        Peak learning rate.
    weight_decay : float
        Decoupled (AdamW) weight decay.
    betas : tuple of float
    eps : float
    grad_clip : float
        Max global gradient L2 norm (0: no clipping).
    ema_decay : float
        EMA decay per step (with the (1 + n)/(10 + n) warm-up).
    """

    lr: float = 2e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    grad_clip: float = 1.0
    ema_decay: float = 0.999


@dataclass
class ScheduleConfig:
    """Length of training and the learning-rate schedule.

    Attributes
    ----------
    steps : int
        Total optimiser steps.
    lr_schedule : {"cosine", "constant"}
        After warm-up: cosine decay to ``min_lr_ratio * lr`` at ``steps``, or constant.
    warmup_steps : int
        Linear warm-up from ``lr / warmup_steps``.
    min_lr_ratio : float
        Final LR of the cosine schedule, relative to ``lr``.
    """

    steps: int = 10_000
    lr_schedule: str = "cosine"
    warmup_steps: int = 200
    min_lr_ratio: float = 0.0


@dataclass
class DataConfig:
    """Batching.

    Attributes
    ----------
    batch_size : int
        Global batch size (split evenly across ranks).
    num_workers : int
        DataLoader worker processes per rank.
    shuffle : bool
        Reshuffle map-style datasets every epoch (seeded by ``seed`` and the epoch).
    description : dict
        Free-form description of the training data, copied into checkpoints.
    """

    batch_size: int = 8
    num_workers: int = 0
    shuffle: bool = True
    description: dict = field(default_factory=dict)


@dataclass
class ValidationConfig:
    """Periodic validation on a held-out set (EMA weights).

    Attributes
    ----------
    every : int
        Validate every this many steps (and at the end); 0 disables periodic validation.
    batch_size : int
        Global validation batch size (0: the training batch size).
    max_batches : int
        Cap on validation batches per rank (0: the whole set).
    sampler_steps : int
        K of the DDIM sampler for diffusion models (1 draw, seeded by ``seed``).
    sampler : {"ddim", "ancestral"}
    seed : int
    """

    every: int = 1000
    batch_size: int = 0
    max_batches: int = 0
    sampler_steps: int = 10
    sampler: str = "ddim"
    seed: int = 1234


@dataclass
class LoggingConfig:
    """Logging and checkpoint cadence (rank 0 only).

    Attributes
    ----------
    log_every : int
        Steps between CSV/TensorBoard rows.
    checkpoint_every : int
        Steps between resumable checkpoints (``checkpoints/last``); one is always written at the end.
    progress : bool
        tqdm progress bar with ETA.
    tensorboard : bool
        Also write TensorBoard events when ``tensorboard`` is installed.
    """

    log_every: int = 50
    checkpoint_every: int = 1000
    progress: bool = True
    tensorboard: bool = True


@dataclass
class TrainConfig:
    """Everything :func:`chromaqpi.training.loop.train` needs besides the datasets.

    Attributes
    ----------
    model : dict
        ``{"kind": "mean"|"ddpm"|"cvdm"|"zmd", **model config}`` (see chromaqpi.models).
    optim, schedule, data, validation, logging : sections
    seed : int
        The one seed every random stream (init, data order, diffusion noise, per rank) derives from.
    precision : {"auto", "bf16", "fp32"}
        bf16 autocast is used only on CUDA ("auto" = bf16 on CUDA, fp32 on CPU).
    device : str or None
        Torch device; None picks this rank's GPU, else the CPU.
    microscope : dict or None
        Microscope family the model is trained for (copied into the checkpoint card).
    input_normalisation : str, dict or None
        Mode applied to every input batch and recorded in the card, so inference applies the same
        (:func:`chromaqpi.models.registry.normalise_input`: "flatfield", "paper", "affine", ...).
    init_from : str or None
        Start from the weights of this trained model (a shipped model's name or a model directory,
        e.g. to fine-tune ``default`` for one microscope); its tensors must fit ``model``. A fresh
        optimiser and schedule; ignored when resuming, where the checkpoint holds the weights.
    """

    model: dict = field(default_factory=lambda: {"kind": "mean"})
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    data: DataConfig = field(default_factory=DataConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    seed: int = 0
    precision: str = "auto"
    device: str | None = None
    microscope: dict | None = None
    input_normalisation: str | dict | None = None
    init_from: str | None = None

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        """Build and validate from a nested dict (unknown keys raise ConfigError)."""
        cfg = config_from_dict(cls, data)
        cfg.validate()
        return cfg

    def to_dict(self) -> dict:
        """JSON-ready nested dict (round-trips through :meth:`from_dict`)."""
        return config_to_dict(self)

    def validate(self) -> None:
        """Raise ConfigError on values that cannot work."""
        checks = [
            (self.model.get("kind") in MODELS, f"model.kind must be one of {sorted(MODELS)}"),
            (self.schedule.steps >= 1, "schedule.steps must be >= 1"),
            (self.schedule.lr_schedule in ("cosine", "constant"), "schedule.lr_schedule: 'cosine' or 'constant'"),
            (self.schedule.warmup_steps >= 0, "schedule.warmup_steps must be >= 0"),
            (self.optim.lr > 0, "optim.lr must be > 0"),
            (0 <= self.optim.ema_decay < 1, "optim.ema_decay must be in [0, 1)"),
            (self.data.batch_size >= 1, "data.batch_size must be >= 1"),
            (self.data.num_workers >= 0, "data.num_workers must be >= 0"),
            (self.precision in ("auto", "bf16", "fp32"), "precision: 'auto', 'bf16' or 'fp32'"),
            (self.validation.sampler in ("ddim", "ancestral"), "validation.sampler: 'ddim' or 'ancestral'"),
            (self.validation.max_batches >= 0, "validation.max_batches must be >= 0 (0: the whole set)"),
            (self.validation.batch_size >= 0, "validation.batch_size must be >= 0 (0: the training batch size)"),
            (_valid_normalisation(self.input_normalisation), f"unknown input_normalisation {self.input_normalisation!r}"),
            (self.logging.log_every >= 1 and self.logging.checkpoint_every >= 1,
             "logging.log_every and logging.checkpoint_every must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        check_seed(self.seed)  # every random stream derives from it
        kind, fields = self.model["kind"], {k: v for k, v in self.model.items() if k != "kind"}
        config_from_dict(MODELS[kind][1], fields, where="model")  # field types and ranges, before any output
