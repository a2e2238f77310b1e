"""scripts/train_gpu.sh: its resolved training config (DRY_RUN, nothing built) is valid for every shipped
family, and the model it trains fits the 25 MiB a shipped fp16 model may weigh."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chromaqpi.models.registry import build_model
from chromaqpi.training.config import TrainConfig

ROOT = Path(__file__).resolve().parents[2]
MAX_BYTES = 25 * 2**20  # the repository's limit per shipped weights file


def resolved(family: str, **env) -> dict:
    env = {**os.environ, "DRY_RUN": "1", "NPROC": "1", "FAMILY": family,
           "CQ": f"{sys.executable} -m chromaqpi.cli.main", **env}
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "train_gpu.sh")], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


@pytest.mark.parametrize("family", ["default", "paper-2shot", "paper-rgb"])
def test_gpu_recipe_resolves_to_a_shippable_model(family):
    config = resolved(family)
    cfg = TrainConfig.from_dict(config)  # validates
    assert (cfg.precision, cfg.data.batch_size, cfg.schedule.steps) == ("auto", 64, 100_000)
    assert (cfg.model.get("prior") == "tie") == family.startswith("paper")  # as the shipped paper models
    assert cfg.data.description["family"] == family and cfg.data.description["crop"] == 256
    n_params = sum(p.numel() for p in build_model(cfg.model).parameters())
    assert 2 * n_params <= MAX_BYTES, f"{n_params / 1e6:.1f} M parameters do not fit in 25 MiB at fp16"


def test_gpu_recipe_takes_the_size_and_kind_overrides():
    config = resolved("default", WIDTH="32", STEPS="500")
    assert config["model"]["unet"]["base_channels"] == 32 and config["schedule"]["steps"] == 500
    comparison = resolved("paper-2shot", KIND="ddpm")  # the paper's baseline: same nets and data, no prior
    assert comparison["model"]["kind"] == "ddpm" and "prior" not in comparison["model"]
