"""EMA of the weights (timm's ModelEmaV3 with warm-up): decay values, the update, checkpoint state."""

import pytest
import torch

from training.ema import WARMUP_GAMMA, WARMUP_POWER, create_ema, ema_state, load_ema_state


def _model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2), torch.nn.Flatten(), torch.nn.Linear(8, 1)
    )


def _train_step(model, seed):
    g = torch.Generator().manual_seed(seed)
    model.train()
    x = torch.rand(3, 1, 4, 4, generator=g)
    model(x).sum().backward()
    with torch.no_grad():
        for p in model.parameters():
            p -= 0.1 * p.grad
            p.grad = None


def test_decay_warm_up_values():
    ema = create_ema(_model(), decay=0.999)
    assert (WARMUP_GAMMA, WARMUP_POWER) == (9.0, 1.0)
    assert ema.get_decay(1) == 0.0  # the first update copies the model
    for n in (2, 3, 10, 50, 128, 256):
        assert ema.get_decay(n) == pytest.approx((n - 1) / (n + 8), rel=1e-12), n
    assert ema.get_decay(81) < 0.9 < ema.get_decay(83)
    assert ema.get_decay(891) < 0.99 < ema.get_decay(893)
    assert ema.get_decay(8_991) < 0.999 and ema.get_decay(8_994) == 0.999  # capped at the long-run decay
    assert ema.get_decay(10**7) == 0.999


def test_update_is_the_moving_average_and_copies_integer_buffers():
    model = _model()
    ema = create_ema(model, decay=0.9)
    assert not ema.module.training and not any(p.requires_grad for p in ema.module.parameters())
    _train_step(model, 1)
    ema.update(model, step=1)
    for k, v in model.state_dict().items():
        assert torch.equal(ema.module.state_dict()[k], v), k  # step 1: an exact copy
    before = {k: v.clone() for k, v in ema.module.state_dict().items()}
    _train_step(model, 2)
    ema.update(model, step=2)
    d = 1 / 10
    for k, v in model.state_dict().items():
        e = ema.module.state_dict()[k]
        if v.is_floating_point():
            torch.testing.assert_close(e, d * before[k] + (1 - d) * v, rtol=1e-6, atol=1e-7)
        else:
            assert torch.equal(e, v), k  # BatchNorm's num_batches_tracked is copied
    assert int(ema.module.state_dict()["1.num_batches_tracked"]) == 2
    with pytest.raises(ValueError, match="decay must be in"):
        create_ema(model, decay=1.0)


def test_state_round_trip_resumes_exactly(tmp_path):
    model = _model()
    full = create_ema(model, decay=0.99)
    steps = {}
    for step in range(1, 7):
        _train_step(model, step)
        steps[step] = {k: v.clone() for k, v in model.state_dict().items()}
        full.update(model, step=step)
    # a second run stops after step 3, saves, and resumes into a fresh EMA
    live = _model()
    part = create_ema(live, decay=0.99)
    for step in range(1, 4):
        live.load_state_dict(steps[step])
        part.update(live, step=step)
    path = tmp_path / "ema.pt"
    torch.save(ema_state(part), path)
    state = torch.load(path, weights_only=True)
    assert state["decay"] == 0.99
    resumed = create_ema(_model(seed=5), decay=0.99)
    load_ema_state(resumed, state)
    for step in range(4, 7):
        live.load_state_dict(steps[step])
        resumed.update(live, step=step)
    for k, v in full.module.state_dict().items():
        assert torch.equal(resumed.module.state_dict()[k], v), k
