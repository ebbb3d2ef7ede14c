"""The learning-rate schedule (timm's CosineLRScheduler per step): warm-up, cosine, end, state."""

import math

import pytest
import torch

from training.schedule import create_scheduler, load_scheduler_state

LR = 1e-3


def _opt():
    return torch.optim.AdamW(torch.nn.Linear(2, 1).parameters(), lr=LR)


def _lrs(total, warmup, ratio=0.01, upto=None):
    opt = _opt()
    sched = create_scheduler(opt, total_steps=total, warmup_steps=warmup, min_lr_ratio=ratio)
    out = [opt.param_groups[0]["lr"]]  # lr of optimizer step 0
    for t in range(1, (upto or total) + 1):
        sched.step_update(num_updates=t)
        out.append(opt.param_groups[0]["lr"])
    return out


def test_warm_up_then_cosine_values():
    total, warmup = 20, 4
    lr = _lrs(total, warmup, upto=total + 3)
    assert lr[0] == pytest.approx(LR / 5, rel=1e-12)  # the first step is not wasted at 0
    assert lr[1:4] == pytest.approx([2 * LR / 5, 3 * LR / 5, 4 * LR / 5], rel=1e-12)
    assert lr[warmup] == pytest.approx(LR, rel=1e-12)  # warm-up end: the peak
    lr_min = 0.01 * LR
    assert lr[warmup + 8] == pytest.approx((LR + lr_min) / 2, rel=1e-12)  # cosine midpoint
    t = 13
    assert lr[t] == pytest.approx(lr_min + (LR - lr_min) * 0.5 * (1 + math.cos(math.pi * (t - warmup) / 16)), rel=1e-12)
    assert all(a > b for a, b in zip(lr[warmup:total], lr[warmup + 1 : total + 1]))  # strictly decreasing
    assert lr[total] == pytest.approx(lr_min, rel=1e-12)  # final step
    assert lr[total + 1 :] == [lr[total]] * 3  # stays at the floor


def test_no_warm_up_and_warm_up_longer_than_the_run():
    assert _lrs(10, 0)[0] == pytest.approx(LR, rel=1e-12)
    lr = _lrs(5, 50)  # clipped to total - 1 = 4 warm-up steps
    assert lr[:5] == pytest.approx([LR * (t + 1) / 5 for t in range(5)], rel=1e-12)
    assert _lrs(1, 1)[0] == pytest.approx(LR, rel=1e-12)
    with pytest.raises(ValueError, match="total_steps >= 1"):
        _lrs(0, 0)
    with pytest.raises(ValueError, match="min_lr_ratio"):
        _lrs(10, 1, ratio=1.5)


def test_state_in_checkpoint_resumes_the_same_values(tmp_path):
    opt = _opt()
    sched = create_scheduler(opt, total_steps=12, warmup_steps=3, min_lr_ratio=0.05)
    for t in range(1, 6):
        sched.step_update(num_updates=t)
    path = tmp_path / "ck.pt"
    torch.save({"scheduler": sched.state_dict(), "optimizer": opt.state_dict()}, path)
    ck = torch.load(path, weights_only=True)  # loadable the way last.pt is
    opt2 = _opt()
    sched2 = create_scheduler(opt2, total_steps=12, warmup_steps=3, min_lr_ratio=0.05)
    opt2.load_state_dict(ck["optimizer"])
    load_scheduler_state(sched2, ck["scheduler"], global_step=5)
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    for t in range(6, 14):
        sched.step_update(num_updates=t)
        sched2.step_update(num_updates=t)
        assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    # a LambdaLR state from an older checkpoint: positioned by the step count alone
    opt3 = _opt()
    sched3 = create_scheduler(opt3, total_steps=12, warmup_steps=3, min_lr_ratio=0.05)
    load_scheduler_state(sched3, {"base_lrs": [LR], "last_epoch": 5, "_step_count": 6}, global_step=5)
    assert opt3.param_groups[0]["lr"] == _lrs(12, 3, ratio=0.05)[5]
