"""Two-process gloo DDP on CPU, launched with torchrun exactly as users would."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch
from toy_data import ToyPhaseDataset, train_dict

from chromaqpi.models.registry import build_model, read_weights
from chromaqpi.training.config import TrainConfig
from chromaqpi.training.distributed import derive_seed
from chromaqpi.training.loop import train

SCRIPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import torch
    torch.set_num_threads(1)
    sys.path.insert(0, sys.argv[3])
    from toy_data import ToyPhaseDataset
    from safetensors.torch import save_file
    from chromaqpi.models.registry import build_model
    from chromaqpi.training.config import TrainConfig
    from chromaqpi.training.distributed import default_device, init_distributed, shutdown, wrap_ddp
    from chromaqpi.training.loop import _LossModule, train

    out, cfg = Path(sys.argv[1]), TrainConfig.from_dict(json.loads(sys.argv[2]))
    info = init_distributed("cpu")
    assert info.world_size == 2 and info.backend == "gloo"
    # 1) gradients of one global batch of 4, split 2 + 2 over the ranks
    torch.manual_seed(0)
    model = build_model(cfg.model)
    ddp = wrap_ddp(_LossModule(model), info, default_device(info, "cpu"))
    data = ToyPhaseDataset(4)
    lo = 2 * info.rank
    local = {"input": data.input[lo:lo + 2], "target": data.target[lo:lo + 2]}
    ddp(local, torch.Generator())["loss"].mean().backward()
    if info.is_main:
        save_file({n: p.grad.contiguous() for n, p in model.named_parameters()}, str(out / "grads.safetensors"))
    # 2) the training loop under DDP (it reuses this process group)
    res = train(cfg, ToyPhaseDataset(8), ToyPhaseDataset(4, seed=1), out / "run")
    (out / f"rank{info.rank}.json").write_text(json.dumps({"step": res.step, "mae": res.best_val_mae}))
    shutdown(info)
""")


def test_two_process_gloo_ddp_matches_single_process(tmp_path):
    cfg = TrainConfig.from_dict(train_dict("mean", steps=4, validation={"every": 2}))
    (tmp_path / "ddp.py").write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(tmp_path / "ddp.py"), str(tmp_path), json.dumps(cfg.to_dict()), str(Path(__file__).parent)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]

    # Same global batch in one process: DDP's averaged gradients must match.
    torch.manual_seed(0)
    model = build_model(cfg.model)
    data = ToyPhaseDataset(4)
    model.loss({"input": data.input, "target": data.target}).mean().backward()
    ddp_grads = read_weights(tmp_path / "grads.safetensors")
    for name, p in model.named_parameters():
        assert torch.allclose(ddp_grads[name], p.grad, rtol=1e-5, atol=1e-7), name

    # Training: only rank 0 wrote checkpoints/logs, both ranks agree, and the weights match a
    # single-process run on the same global batches (up to float reduction order).
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0] == ranks[1] and ranks[0]["step"] == 4
    single = train(cfg, ToyPhaseDataset(8), ToyPhaseDataset(4, seed=1), tmp_path / "single")
    assert abs(single.best_val_mae - ranks[0]["mae"]) < 1e-5
    a = read_weights(tmp_path / "run/checkpoints/last/train_state.safetensors")
    b = read_weights(single.last_checkpoint / "train_state.safetensors")
    for k in (k for k in a if k.startswith("model.")):
        # Adam normalises tiny gradients, so reduction-order noise shows up at ~1e-6 after 4 steps
        # (each weight moves by up to lr * steps = 8e-3).
        assert (a[k] - b[k]).abs().max() < 2e-5, k
    assert len(list((tmp_path / "run").glob("*.csv"))) == 2


def test_per_rank_seeds_are_distinct_and_reproducible():
    seeds = {derive_seed(7, "loss", rank, 0) for rank in range(8)}
    assert len(seeds) == 8 and derive_seed(7, "loss", 3, 0) == derive_seed(7, "loss", 3, 0)
    assert all(0 <= s < 2**63 for s in seeds)
