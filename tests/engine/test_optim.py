import math
from dataclasses import replace

import torch

from rvos.config import TrainConfig
from rvos.engine.optim import TrainingClock, build_scheduler, lr_factor


def test_the_cosine_schedule_warms_up_then_decays_to_zero_at_the_last_iteration():
    cfg = TrainConfig(iterations=110, warmup_iters=10, schedule="cosine")
    assert lr_factor(0, cfg) == 0.1 and lr_factor(9, cfg) == 1.0
    assert lr_factor(10, cfg) == 1.0 and math.isclose(lr_factor(60, cfg), 0.5) and lr_factor(110, cfg) == 0.0


def test_a_time_schedule_is_as_far_along_as_the_time_or_the_steps_whichever_is_further():
    cfg = TrainConfig(iterations=110, warmup_iters=10, schedule="cosine", max_minutes=2.0, time_schedule=True)
    assert lr_factor(60, cfg, seconds=0.0) == lr_factor(60, replace(cfg, time_schedule=False))
    # a slow machine: step 20 after half the minutes is where step 55 of 110 would be
    assert lr_factor(20, cfg, seconds=60.0) == lr_factor(55, cfg) < lr_factor(20, cfg)
    assert lr_factor(20, cfg, seconds=120.0) == 0.0  # the time limit ends the run at the schedule's end
    assert lr_factor(100, cfg, seconds=60.0) == lr_factor(100, cfg)  # a fast machine: the steps are further
    for off in ({"time_schedule": False}, {"max_minutes": 0.0}):  # the steps alone
        assert lr_factor(20, replace(cfg, **off), seconds=60.0) == lr_factor(20, cfg)


def test_the_scheduler_reads_the_training_clock():
    cfg = TrainConfig(iterations=100, schedule="cosine", lr=1.0, max_minutes=1.0, time_schedule=True)
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    clock = TrainingClock()
    scheduler = build_scheduler(optimizer, cfg, clock)
    optimizer.step()
    clock.seconds = 45.0  # three quarters of the minute after one step
    scheduler.step()
    assert math.isclose(optimizer.param_groups[0]["lr"], lr_factor(75, cfg))
