import pytest
import torch

from chromaqpi.training.ema import EMA


def test_ema_follows_the_lerp_rule_with_warmup():
    net = torch.nn.Linear(3, 2)
    ema = EMA(net, decay=0.9)
    start = [p.detach().clone() for p in net.parameters()]
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    ema.update(net)
    d0 = min(0.9, 1 / 10)  # first update uses the warm-up decay (1 + 0)/(10 + 0)
    for avg, s in zip(ema.module.parameters(), start):
        assert torch.allclose(avg, d0 * s + (1 - d0) * (s + 1))
    assert ema.updates == 1 and ema.decay_at(1000) == 0.9
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_ema_rejects_bad_decay():
    with pytest.raises(ValueError):
        EMA(torch.nn.Linear(1, 1), decay=1.0)
