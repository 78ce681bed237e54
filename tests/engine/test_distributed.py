"""The process group's teardown."""

import gc
import weakref

import torch
import torch.distributed as dist

from rvos.engine import distributed


def test_teardown_frees_a_wrapper_in_a_reference_cycle_before_it_destroys_the_group(tmp_path):
    # a wrapper that outlives destroy_process_group keeps gloo's threads running into interpreter shutdown, where
    # they may abort the process
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    gc.disable()  # only teardown collects the cycle
    try:
        wrapped = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(2, 2))
        wrapped(torch.ones(1, 2)).sum().backward()

        class Holder:  # the trainer and its hooks hold each other
            pass

        holder = Holder()
        holder.model, holder.self = wrapped, holder
        alive = weakref.ref(wrapped)
        del wrapped, holder
        assert alive() is not None
        distributed.teardown()
        assert alive() is None and not dist.is_initialized()
    finally:
        gc.enable()
        if dist.is_initialized():
            dist.destroy_process_group()
