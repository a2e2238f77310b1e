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


def test_ema_without_warmup_uses_the_target_decay_from_the_start():
    # Catches a slip (warmup flag ignored).
    from chromaqpi.training.ema import EMA
    net = torch.nn.Linear(2, 1)
    ema = EMA(net, decay=0.9, warmup=False)
    start = [p.detach().clone() for p in net.parameters()]
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    ema.update(net)
    assert ema.decay_at(0) == 0.9
    for avg, s in zip(ema.module.parameters(), start):
        assert torch.allclose(avg, s + 0.1)


def test_ema_copies_buffers_and_stays_in_eval_mode():
    # Catches a slip (buffers not copied) and (averaged copy left in training mode).
    from chromaqpi.training.ema import EMA
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    ema = EMA(net, decay=0.99)
    net.train()
    net(torch.randn(16, 3) + 5.0)  # moves the running statistics
    ema.update(net)
    assert torch.equal(ema.module[1].running_mean, net[1].running_mean)
    assert int(ema.module[1].num_batches_tracked) == 1
    assert not ema.module.training


def test_ema_rejects_negative_decay():
    # Catches a slip (lower bound of the decay check removed).
    from chromaqpi.training.ema import EMA
    with pytest.raises(ValueError):
        EMA(torch.nn.Linear(1, 1), decay=-0.1)
