import csv
import json

import pytest
import torch
from toy_data import ToyIterable, ToyPhaseDataset, model_dict, train_dict

from chromaqpi.errors import ConfigError
from chromaqpi.models.registry import load_model, read_weights
from chromaqpi.training.config import TrainConfig
from chromaqpi.training.loop import _prepare, lr_at, measure_train_throughput, residual_rms, train, validate


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_lr_schedule_warmup_then_cosine_or_constant():
    cfg = TrainConfig.from_dict(train_dict(steps=12, optim={"lr": 1.0}, schedule={"warmup_steps": 2}))
    assert [lr_at(s, cfg) for s in (0, 1)] == [0.5, 1.0]
    assert lr_at(2, cfg) == 1.0 and lr_at(12, cfg) == pytest.approx(0.0)
    assert lr_at(7, cfg) == pytest.approx(0.5)  # half way through the cosine
    cfg.schedule.lr_schedule = "constant"
    assert lr_at(11, cfg) == 1.0


def test_config_rejects_unknown_keys_and_bad_values():
    with pytest.raises(ConfigError, match="lrr"):
        TrainConfig.from_dict(train_dict(optim={"lrr": 1.0}))
    with pytest.raises(ConfigError, match="precision"):
        TrainConfig.from_dict(train_dict(precision="fp8"))
    with pytest.raises(ConfigError, match="input_normalisation"):
        TrainConfig.from_dict(train_dict(input_normalisation="per-image"))
    cfg = TrainConfig.from_dict(train_dict())
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_training_inputs_get_the_card_normalisation():
    cfg = TrainConfig.from_dict(train_dict(input_normalisation="flatfield"))
    batch = {"input": torch.full((2, 3, 4, 4), 1.25), "target": torch.zeros(2, 1, 4, 4), "index": "kept"}
    out = _prepare(batch, torch.device("cpu"), cfg)
    assert torch.equal(out["input"], torch.full((2, 3, 4, 4), 0.25)) and out["index"] == "kept"


def test_training_writes_logs_and_loadable_checkpoints(tmp_path):
    cfg = TrainConfig.from_dict(train_dict("mean", steps=6))
    res = train(cfg, ToyPhaseDataset(12), ToyPhaseDataset(4, seed=1), tmp_path)
    assert res.step == 6 and res.best_step in (3, 6) and res.best_val_mae > 0
    train_rows, val_rows = rows(tmp_path / "train.csv"), rows(tmp_path / "val.csv")
    assert [int(r["step"]) for r in train_rows] == [2, 4, 6]
    assert {"loss", "lr", "grad_norm", "samples_per_s"} <= set(train_rows[0])
    assert [int(r["step"]) for r in val_rows] == [3, 6]
    best = load_model(res.best_checkpoint)
    assert best.card["microscope"] == {"family": "toy"} and best.card["input_normalisation"] == {"mode": "identity"}
    assert best.card["provenance"]["step"] == res.best_step
    hardware = best.card["provenance"]["hardware"]  # what trained it travels with the weights (model cards)
    assert (hardware["device"], hardware["processes"], hardware["precision"]) == ("cpu", 1, "fp32")
    assert hardware["cpu_threads"] == torch.get_num_threads()
    assert TrainConfig.from_dict(json.loads((tmp_path / "train_config.json").read_text())) == cfg
    x = ToyPhaseDataset(2).input
    assert torch.isfinite(best.predict(x)).all()


def test_resume_continues_bit_for_bit(tmp_path):
    # Kill-equivalent: stop after step 3 (a checkpoint), resume to 6; compare with 6 steps straight.
    cfg = TrainConfig.from_dict(train_dict("zmd", steps=6))
    data, val = ToyPhaseDataset(8), ToyPhaseDataset(4, seed=1)
    train(cfg, data, val, tmp_path / "a", until_step=3)
    res = train(cfg, data, val, tmp_path / "a", resume=True)
    train(cfg, data, val, tmp_path / "b")
    assert res.step == 6
    for name in ("model.safetensors", "train_state.safetensors"):
        a = read_weights(tmp_path / "a/checkpoints/last" / name)
        b = read_weights(tmp_path / "b/checkpoints/last" / name)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a if not k.startswith("rng.")), name
    logged_a = {r["step"]: r["loss"] for r in rows(tmp_path / "a/train.csv")}  # step 3 logged at the stop
    logged_b = {r["step"]: r["loss"] for r in rows(tmp_path / "b/train.csv")}
    assert list(logged_a) == ["2", "3", "4", "6"] and all(logged_a[s] == logged_b[s] for s in logged_b)


def test_runs_are_not_overwritten_and_resume_checks_the_model(tmp_path):
    cfg = TrainConfig.from_dict(train_dict("mean", steps=2, validation={"every": 0}))
    train(cfg, ToyPhaseDataset(8), None, tmp_path)
    with pytest.raises(ConfigError, match="resume=True"):
        train(cfg, ToyPhaseDataset(8), None, tmp_path)
    other = TrainConfig.from_dict({**train_dict("ddpm", steps=4), "model": model_dict("ddpm")})
    with pytest.raises(ConfigError, match="differs"):
        train(other, ToyPhaseDataset(8), None, tmp_path, resume=True)
    with pytest.raises(ConfigError, match="nothing to resume"):
        train(cfg, ToyPhaseDataset(8), None, tmp_path / "new", resume=True)


def test_iterable_datasets_and_batch_checks(tmp_path):
    cfg = TrainConfig.from_dict(train_dict("mean", steps=3, validation={"every": 0}))
    assert train(cfg, ToyIterable(8), None, tmp_path / "it").step == 3
    with pytest.raises(ConfigError, match="smaller than one global batch"):
        train(cfg, ToyPhaseDataset(2), None, tmp_path / "small")


def test_throughput_helper_reports_samples_per_second():
    from chromaqpi.models.registry import build_model

    model = build_model(model_dict("ddpm"))
    data = ToyPhaseDataset(2)
    rate = measure_train_throughput(model, {"input": data.input, "target": data.target}, steps=2, warmup=1)
    assert rate > 0


def test_residual_rms_sets_the_zmd_scale():
    from chromaqpi.models.registry import build_model

    data = ToyPhaseDataset(6)
    model = build_model(model_dict("zmd"))  # zero-initialised output: mu = 0, so RMS = RMS(Y)
    rms = residual_rms(model, data, TrainConfig.from_dict(train_dict()))
    assert rms == pytest.approx(float(data.target.double().pow(2).mean().sqrt()), rel=1e-6)


def test_zmd_validation_also_scores_its_mean_network():
    from chromaqpi.models.registry import build_model

    torch.manual_seed(0)
    zmd = build_model(model_dict("zmd"))
    cfg = TrainConfig.from_dict(train_dict("zmd", validation={"sampler_steps": 2}))
    val = ToyPhaseDataset(4, seed=1)
    out = validate(zmd, val, cfg)
    x, y = val.input, val.target
    with torch.no_grad():
        d = zmd.mean(x).float() - y.float()
    expected = float((d - d.flatten(1).median(dim=1).values[:, None, None, None]).abs().mean())
    assert out["images"] == 4 and out["mean_mae_rad"] == pytest.approx(expected, rel=1e-4)
    assert "mean_mae_rad" not in validate(build_model(model_dict("mean")), val, cfg)


def test_init_from_starts_at_the_given_weights_and_checks_shapes(tmp_path):
    from chromaqpi.errors import WeightsError

    cfg = TrainConfig.from_dict(train_dict("mean", steps=2, validation={"every": 0}))
    first = train(cfg, ToyPhaseDataset(8), None, tmp_path / "a")
    start = read_weights(first.last_checkpoint / "model.safetensors")
    # Zero steps of a fine-tune would be the source itself: compare after the EMA's first copy.
    tuned = TrainConfig.from_dict({**train_dict("mean", steps=1, validation={"every": 0}),
                                   "init_from": str(first.last_checkpoint)})
    tuned.optim.lr = 1e-12  # a step this small leaves the weights where init_from put them
    res = train(tuned, ToyPhaseDataset(8), None, tmp_path / "b")
    after = read_weights(res.last_checkpoint / "model.safetensors")
    assert all(torch.allclose(after[k], start[k], atol=1e-6) for k in start)
    fresh = read_weights(train(TrainConfig.from_dict(train_dict("mean", steps=1, validation={"every": 0}, seed=5)),
                               ToyPhaseDataset(8), None, tmp_path / "c").last_checkpoint / "model.safetensors")
    assert any(not torch.allclose(fresh[k], start[k], atol=1e-6) for k in start)  # the check can fail
    wide = {**train_dict("mean", steps=1), "model": {**model_dict("mean"), "unet": {**model_dict("mean")["unet"],
                                                                                       "base_channels": 16}}}
    with pytest.raises(WeightsError, match="init_from"):
        train(TrainConfig.from_dict({**wide, "init_from": str(first.last_checkpoint)}), ToyPhaseDataset(8), None,
              tmp_path / "d")


def test_a_run_without_last_checkpoint_is_not_overwritten_either(tmp_path):
    cfg = TrainConfig.from_dict(train_dict("mean", steps=2, validation={"every": 0}))
    (tmp_path / "checkpoints" / "best").mkdir(parents=True)  # e.g. a run interrupted before its first `last`
    with pytest.raises(ConfigError, match=r"holds a training run \(checkpoints/best\): continue it with --resume"):
        train(cfg, ToyPhaseDataset(8), None, tmp_path)


class _Interrupted(ToyPhaseDataset):
    """Raises KeyboardInterrupt (Ctrl-C, or SIGTERM in the CLI) when sample ``at`` is read."""

    def __init__(self, n, at):
        super().__init__(n)
        self.at, self.reads = at, 0

    def __getitem__(self, i):
        self.reads += 1
        if self.reads > self.at:
            raise KeyboardInterrupt
        return super().__getitem__(i)


def test_an_interrupted_run_saves_its_last_step_for_resume(tmp_path):
    cfg = TrainConfig.from_dict(train_dict("mean", steps=8, validation={"every": 0}, logging={"checkpoint_every": 100}))
    batch = cfg.data.batch_size
    with pytest.raises(KeyboardInterrupt):  # during step 3: no regular checkpoint yet
        train(cfg, _Interrupted(16, at=2 * batch), None, tmp_path)
    assert load_model(tmp_path / "checkpoints" / "last").card["provenance"]["step"] == 2
    assert train(cfg, ToyPhaseDataset(16), None, tmp_path, resume=True).step == 8


def test_a_diverging_run_is_a_one_line_error(tmp_path):
    from chromaqpi.errors import ChromaQPIError

    cfg = TrainConfig.from_dict(train_dict("mean", steps=4, validation={"every": 0}, optim={"lr": 1e30}))
    with pytest.raises(ChromaQPIError, match="non-finite training loss at step .*: lower --lr"):
        train(cfg, ToyPhaseDataset(8), None, tmp_path)


def test_resume_refuses_other_data_or_another_family(tmp_path):
    cfg = TrainConfig.from_dict(train_dict("mean", steps=4, validation={"every": 0}))
    train(cfg, ToyPhaseDataset(8), None, tmp_path, until_step=2)
    other = TrainConfig.from_dict(train_dict("mean", steps=4, validation={"every": 0},
                                             data={"description": {"source": "elsewhere"}}))
    with pytest.raises(ConfigError, match="data of .* differs from this run's .*start a new stage with --init-from"):
        train(other, ToyPhaseDataset(8), None, tmp_path, resume=True)
    moved = TrainConfig.from_dict(train_dict("mean", steps=4, validation={"every": 0}, microscope={"family": "x"}))
    with pytest.raises(ConfigError, match="microscope family of"):
        train(moved, ToyPhaseDataset(8), None, tmp_path, resume=True)
    assert train(cfg, ToyPhaseDataset(8), None, tmp_path, resume=True).step == 4  # the same run continues


def test_init_from_refuses_a_model_that_reads_another_prior(tmp_path):
    cfg = TrainConfig.from_dict(train_dict("mean", steps=2, validation={"every": 0}))
    source = train(cfg, ToyPhaseDataset(8), None, tmp_path / "src").last_checkpoint
    with_prior = train_dict("mean", steps=2, validation={"every": 0}, init_from=str(source))
    with_prior["model"] = {**with_prior["model"], "prior": "tie"}
    with pytest.raises(ConfigError, match="was trained with prior None, this run has 'tie'"):
        train(TrainConfig.from_dict(with_prior), ToyPhaseDataset(8), None, tmp_path / "dst")


def test_cards_record_the_data_hardware_and_wall_time_of_a_run(tmp_path):
    """Provenance of a user's model: each dataset folder (manifest sha256, samples), the hardware, and the
    training wall time summed over --resume sessions (kept in the loop state)."""
    import hashlib
    import time

    from chromaqpi.datasets.build import build_dataset
    from chromaqpi.datasets.torch_data import ShardDataset
    from chromaqpi.training.loop import cpu_name

    folders = {}
    for name, n, seed in (("train", 8, 1), ("val", 4, 2)):
        folders[name] = tmp_path / name
        build_dataset(None, "default", n, 16, seed, folders[name], shard_size=4, group_size=2, progress=False)
    cfg = TrainConfig.from_dict(train_dict("mean", steps=4, validation={"every": 2, "max_batches": 1}))
    data, val = ShardDataset(folders["train"], augment=False), ShardDataset(folders["val"], augment=False)
    run = tmp_path / "run"
    train(cfg, data, val, run, until_step=2)
    state_file = run / "checkpoints" / "last" / "train_state.json"
    state = json.loads(state_file.read_text())
    first = state["loop"]["train_seconds"]
    assert first > 0
    state["loop"]["train_seconds"] = first + 1000.0  # as if the first session had taken 1000 s longer
    state_file.write_text(json.dumps(state))
    began = time.monotonic()
    res = train(cfg, data, val, run, resume=True)
    second = time.monotonic() - began
    for checkpoint in (res.last_checkpoint, res.best_checkpoint):
        prov = load_model(checkpoint).card["provenance"]
        assert prov["datasets"] == {name: [{
            "folder": str(folder), "samples": {"train": 8, "val": 4}[name],
            "manifest_sha256": hashlib.sha256((folder / "manifest.json").read_bytes()).hexdigest()}]
            for name, folder in folders.items()}
        hw = prov["hardware"]
        assert (hw["device"], hw["name"], hw["processes"]) == ("cpu", cpu_name(), 1) and prov["torch_version"]
    prov = load_model(res.last_checkpoint).card["provenance"]
    assert first + 1000.0 < prov["train_seconds"] <= first + 1000.0 + second + 0.1  # both sessions counted
    assert "train_seconds_from_step" not in prov


def test_a_run_resumed_from_an_untimed_checkpoint_says_from_which_step_it_was_timed(tmp_path):
    cfg = TrainConfig.from_dict(train_dict("mean", steps=4, validation={"every": 0}))
    train(cfg, ToyPhaseDataset(8), None, tmp_path, until_step=2)
    state_file = tmp_path / "checkpoints" / "last" / "train_state.json"
    state = json.loads(state_file.read_text())
    del state["loop"]["train_seconds"]  # as saved before runs were timed
    state_file.write_text(json.dumps(state))
    res = train(cfg, ToyPhaseDataset(8), None, tmp_path, resume=True)
    prov = load_model(res.last_checkpoint).card["provenance"]
    assert prov["train_seconds"] > 0 and prov["train_seconds_from_step"] == 2
    assert prov["datasets"] == {"train": None, "val": None}  # in-memory data: no folder to name


def test_resume_warns_when_its_data_folder_was_rebuilt_with_other_samples(tmp_path):
    import shutil
    import warnings

    from chromaqpi.datasets.build import build_dataset
    from chromaqpi.datasets.torch_data import ShardDataset

    folder = tmp_path / "train"
    build_dataset(None, "default", 4, 16, 1, folder, shard_size=4, group_size=2, progress=False)
    cfg = TrainConfig.from_dict(train_dict("mean", steps=6, validation={"every": 0}))
    run = tmp_path / "run"
    train(cfg, ShardDataset(folder, augment=False), None, run, until_step=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same folder: no warning
        train(cfg, ShardDataset(folder, augment=False), None, run, resume=True, until_step=4)
    shutil.rmtree(folder)
    build_dataset(None, "default", 4, 16, 2, folder, shard_size=4, group_size=2, progress=False)  # another seed
    with pytest.warns(UserWarning, match=r"train data .*train changed since .*\(another manifest sha256\)"):
        train(cfg, ShardDataset(folder, augment=False), None, run, resume=True)
