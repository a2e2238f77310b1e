import json

import pytest
import torch
from toy_data import TINY_UNET, model_dict

from chromaqpi.errors import WeightsError
from chromaqpi.models import registry
from chromaqpi.models.registry import build_model, load_model
from chromaqpi.training.checkpoint import (
    atomic_directory, export_fp16, find_checkpoint, load_training_checkpoint, make_card, save_model,
    save_training_checkpoint,
)
from chromaqpi.training.ema import EMA


def trained_pair(kind="mean"):
    torch.manual_seed(0)
    model = build_model(model_dict(kind))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return model


def test_saved_model_loads_by_path_with_its_card(tmp_path):
    model = trained_pair("zmd")
    save_model(tmp_path / "m", model, make_card(model, microscope={"family": "toy"}, data={"n": 3}))
    loaded = load_model(tmp_path / "m")
    assert type(loaded) is type(model) and not loaded.training
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k
    assert loaded.card["microscope"] == {"family": "toy"} and loaded.card["weights"]["sha256"]
    assert "git_commit" in loaded.card["provenance"]


def test_named_models_resolve_to_the_weights_folder(tmp_path, monkeypatch):
    model = trained_pair()
    save_model(tmp_path / "tiny-demo", model, make_card(model))
    monkeypatch.setattr(registry, "WEIGHTS_DIR", tmp_path)
    assert registry.list_models() == ["tiny-demo"]
    assert isinstance(load_model("tiny-demo"), type(model))
    with pytest.raises(WeightsError, match="tiny-demo"):
        load_model("no-such-model")


def test_mismatched_checkpoint_names_the_tensors_in_one_line(tmp_path):
    model = trained_pair()
    save_model(tmp_path / "m", model, make_card(model))
    card = json.loads((tmp_path / "m" / "config.json").read_text())
    card["model"]["unet"] = {**TINY_UNET, "base_channels": 16}  # a wider model than the weights
    (tmp_path / "m" / "config.json").write_text(json.dumps(card))
    with pytest.raises(WeightsError) as err:
        load_model(tmp_path / "m")
    message = str(err.value)
    assert "\n" not in message and "shape" in message and "net." in message


def test_missing_and_unexpected_tensors_are_reported():
    model = trained_pair()
    state = dict(model.state_dict())
    state["extra.weight"] = state.pop("net.stem.weight")
    with pytest.raises(WeightsError, match=r"missing net\.stem\.weight; unexpected extra\.weight"):
        registry.load_weights_into(model, state)


def test_corrupt_weights_fail_the_checksum(tmp_path):
    model = trained_pair()
    save_model(tmp_path / "m", model, make_card(model))
    path = tmp_path / "m" / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="sha256"):
        load_model(tmp_path / "m")


def test_pickle_checkpoint_named_in_a_card_is_refused_unread(tmp_path, monkeypatch):
    model = trained_pair()
    save_model(tmp_path / "m", model, make_card(model))
    torch.save(model.state_dict(), tmp_path / "m" / "model.pt")
    card = json.loads((tmp_path / "m" / "config.json").read_text())
    # Its true checksum: the safetensors reader itself must refuse the pickle.
    card["weights"] = {"file": "model.pt", "sha256": registry.sha256_file(tmp_path / "m" / "model.pt")}
    (tmp_path / "m" / "config.json").write_text(json.dumps(card))
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("a user's pickle was unpickled"))
    with pytest.raises(WeightsError, match="PyTorch pickle checkpoint; only safetensors") as err:
        load_model(tmp_path / "m")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("weights, message", [
    ({"file": "../other/model.safetensors"}, "file name inside the model folder"),
    ({"file": "/etc/passwd"}, "file name inside the model folder"),
    ({"file": "model.safetensors", "sha256": None}, "64-digit hex checksum"),
    ({"file": "model.safetensors", "sha256": "abc"}, "64-digit hex checksum"),
])
def test_card_cannot_point_outside_its_folder_or_skip_the_checksum(tmp_path, weights, message):
    model = trained_pair()
    save_model(tmp_path / "m", model, make_card(model))
    card = json.loads((tmp_path / "m" / "config.json").read_text())
    card["weights"] = {**card["weights"], **weights}
    (tmp_path / "m" / "config.json").write_text(json.dumps(card))
    with pytest.raises(WeightsError, match=message):
        load_model(tmp_path / "m")


@pytest.mark.parametrize("field, value, message", [
    ("in_channels", "three", "in_channels: expected int, got 'three'"),
    ("unet", {"groups": 0}, "groups must be >= 1"),
    ("unet", {"channel_mults": []}, "channel_mults"),
    ("offset_invariant", "yes", "offset_invariant: expected bool, got 'yes'"),
])
def test_card_with_impossible_model_values_is_one_weights_error(tmp_path, field, value, message):
    model = trained_pair()
    save_model(tmp_path / "m", model, make_card(model))
    card = json.loads((tmp_path / "m" / "config.json").read_text())
    card["model"][field] = {**card["model"][field], **value} if isinstance(value, dict) else value
    (tmp_path / "m" / "config.json").write_text(json.dumps(card))
    with pytest.raises(WeightsError, match=message) as err:
        load_model(tmp_path / "m")
    assert "\n" not in str(err.value)


def test_weights_of_a_diverged_run_are_refused_with_a_checksum_that_matches(tmp_path):
    model = trained_pair()
    with torch.no_grad():
        next(model.parameters())[0].fill_(float("nan"))
    save_model(tmp_path / "m", model, make_card(model))  # the card's sha256 is the NaN file's
    with pytest.raises(WeightsError, match="NaN/Inf values.*diverged"):
        load_model(tmp_path / "m")


def test_fp16_export_is_half_size_and_loads_close(tmp_path):
    model = trained_pair()
    save_model(tmp_path / "m", model, make_card(model))
    export_fp16(tmp_path / "m", tmp_path / "m16")
    small = (tmp_path / "m16" / "model.safetensors").stat().st_size
    assert small < 0.6 * (tmp_path / "m" / "model.safetensors").stat().st_size
    loaded = load_model(tmp_path / "m16")
    assert next(loaded.parameters()).dtype == torch.float32
    for a, b in zip(model.parameters(), loaded.parameters()):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-4)


def test_atomic_directory_keeps_the_old_checkpoint_on_failure(tmp_path):
    target = tmp_path / "last"
    with atomic_directory(target) as tmp:
        (tmp / "config.json").write_text("{}")
    with pytest.raises(RuntimeError), atomic_directory(target) as tmp:
        (tmp / "config.json").write_text('{"new": 1}')
        raise RuntimeError("killed mid-write")
    assert (target / "config.json").read_text() == "{}"
    assert [p.name for p in tmp_path.iterdir()] == ["last"]  # no temporary left behind
    target.rename(tmp_path / "last.old")  # a crash between the two renames of the swap
    assert find_checkpoint(target) == tmp_path / "last.old"


def test_training_state_round_trip(tmp_path):
    model = trained_pair("ddpm")
    ema = EMA(model, decay=0.9)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batch = {"input": torch.randn(2, 3, 8, 8), "target": torch.rand(2, 1, 8, 8)}
    model.loss(batch, generator=torch.Generator().manual_seed(0)).mean().backward()
    opt.step()
    ema.update(model)
    save_training_checkpoint(tmp_path / "last", model=model, ema=ema, optimizer=opt, card=make_card(model),
                             loop_state={"step": 1})
    model2 = build_model(model_dict("ddpm"))
    ema2, opt2 = EMA(model2, decay=0.9), torch.optim.AdamW(model2.parameters(), lr=1e-3)
    state = load_training_checkpoint(tmp_path / "last", model=model2, ema=ema2, optimizer=opt2)
    assert state == {"step": 1} and ema2.updates == 1
    for a, b in zip(model.state_dict().values(), model2.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(ema.module.state_dict().values(), ema2.module.state_dict().values()):
        assert torch.equal(a, b)
    s1, s2 = opt.state_dict()["state"], opt2.state_dict()["state"]
    assert all(torch.equal(s1[i][k], s2[i][k]) for i in s1 for k in s1[i])


def test_checkpoints_get_the_permissions_of_plain_files_and_folders(tmp_path):
    """Shareable with a group: 0644 files and 0755 folders under umask 022 (mkstemp/mkdtemp give 0600/0700)."""
    import os

    old = os.umask(0o022)
    try:
        model = trained_pair()
        ema, opt = EMA(model, decay=0.9), torch.optim.AdamW(model.parameters(), lr=1e-3)
        save_model(tmp_path / "best", model, make_card(model))
        save_training_checkpoint(tmp_path / "last", model=model, ema=ema, optimizer=opt, card=make_card(model),
                                 loop_state={"step": 0})
        export_fp16(tmp_path / "best", tmp_path / "best16")
    finally:
        os.umask(old)
    for folder in ("best", "last", "best16"):
        assert (tmp_path / folder).stat().st_mode & 0o777 == 0o755, folder
        for path in (tmp_path / folder).iterdir():
            assert path.stat().st_mode & 0o777 == 0o644, path
    assert sorted(p.name for p in (tmp_path / "last").iterdir()) == [
        "config.json", "model.safetensors", "train_state.json", "train_state.safetensors"]
