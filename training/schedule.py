"""The learning-rate schedule: linear warm-up, then cosine decay, per optimizer step.

timm's :class:`~timm.scheduler.CosineLRScheduler` in step mode (``t_in_epochs=False``),
driven by ``step_update(num_updates=global_step)`` after every optimizer step. Its state
(every attribute but the optimizer) goes into ``last.pt``.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def create_scheduler(opt, *, total_steps: int, warmup_steps: int, min_lr_ratio: float):
    """Warm-up + cosine schedule over ``total_steps`` optimizer steps.

    Optimizer step ``t`` (0-based) runs at ``lr·(t+1)/(w+1)`` for ``t < w`` (the first step
    is not wasted at lr 0, and step ``w`` reaches the full ``lr``), then at
    ``lr_min + (lr − lr_min)·½(1 + cos(π·(t − w)/(T − w)))`` with ``lr_min = min_lr_ratio·lr``,
    and at ``lr_min`` from step ``T`` on. ``w`` is clipped to ``T − 1``.

    Args:
        opt: the optimizer; each param group's current ``lr`` is its peak.
        total_steps: ``T``, optimizer steps in the whole run (>= 1).
        warmup_steps: ``w``, linear warm-up steps (>= 0).
        min_lr_ratio: final lr as a fraction of the peak, in [0, 1].

    Returns:
        A ``timm.scheduler.CosineLRScheduler``; the optimizer's lr is already set for step 0.
    """
    from timm.scheduler import CosineLRScheduler

    if total_steps < 1 or warmup_steps < 0:
        raise ValueError(f"need total_steps >= 1 and warmup_steps >= 0 (got {total_steps}, {warmup_steps})")
    if not 0.0 <= min_lr_ratio <= 1.0:
        raise ValueError(f"min_lr_ratio must be in [0, 1], got {min_lr_ratio}")
    warmup = min(int(warmup_steps), int(total_steps) - 1)
    peak = opt.param_groups[0]["lr"]
    # timm warns that a one-step cosine "will have no effect"; here that one step after the
    # warm-up runs at the peak lr, as the formula above says: nothing to tell the user
    quiet = logging.getLogger("timm.scheduler.cosine_lr")
    level = quiet.level
    if total_steps - warmup <= 1:
        quiet.setLevel(logging.ERROR)
    try:
        return CosineLRScheduler(
            opt,
            t_initial=max(1, total_steps - warmup),
            lr_min=min_lr_ratio * peak,
            warmup_t=warmup,
            warmup_lr_init=peak / (warmup + 1),
            warmup_prefix=True,
            t_in_epochs=False,
        )
    finally:
        quiet.setLevel(level)


def load_scheduler_state(sched, state: dict, global_step: int) -> None:
    """Restore ``sched`` from a checkpoint's ``scheduler`` entry.

    A checkpoint written before the schedule was timm's holds a ``LambdaLR`` state; the
    schedule then follows from ``global_step`` alone (the optimizer state keeps the lr).
    """
    if "t_initial" in state:
        sched.load_state_dict(state)
    else:
        log.info("checkpoint scheduler state is not a CosineLRScheduler's; positioning it at step %d", global_step)
    sched.step_update(num_updates=global_step)
