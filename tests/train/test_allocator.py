"""keep_freed_memory makes glibc keep freed blocks for reuse instead of handing them back.

A masked training step allocates and frees the same temporaries every step; with glibc's
defaults large ones are unmapped or trimmed on free and faulted in again on the next step (2-3k
minor faults per LeNet-5 step in benchmarks/train_speed.py, none with the setting). Page-fault
counts of a few steps vary from run to run, so this checks the two thresholds themselves through
glibc's own accounting (mallinfo2): a 40 MB block, above glibc's largest dynamic mmap threshold
(32 MB), is mmapped and unmapped by default, but comes from the heap and stays there once freed
when the thresholds are raised; training (`fit`) leaves the setting to the entry points. Fresh
interpreters: the setting is process-wide."""

from __future__ import annotations

from python_script import script_json

ALLOCATE_AND_FREE = """
import ctypes, json, sys
from sparsetune.train.allocator import keep_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost").split()]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
if sys.argv[1] == "tuned":
    assert keep_freed_memory() and keep_freed_memory()  # idempotent
if sys.argv[1] == "after_fit":  # the library leaves the policy to the entry point
    import torch
    from torch import nn
    from sparsetune.config import TrainConfig
    from sparsetune.data.tensors import TensorSet
    from sparsetune.train.loop import fit
    data = TensorSet(torch.randn(8, 3), torch.tensor([0, 1] * 4))
    fit(nn.Linear(3, 2), data, TrainConfig(epochs=1, batch_size=4), seed=0)
size = 40 << 20
before = libc.mallinfo2()
block = libc.malloc(size)
ctypes.memset(block, 1, size)
held = libc.mallinfo2()
libc.free(block)
freed = libc.mallinfo2()
print(json.dumps({
    "mmapped_while_held": held.hblkhd,
    "heap_after_free": freed.arena,
    "mmapped_for_block": held.hblkhd - before.hblkhd,
}))
"""
BLOCK = 40 << 20


def _accounting(mode: str) -> dict[str, int]:
    return script_json(ALLOCATE_AND_FREE, mode, timeout=60)


def test_by_default_a_large_block_is_mmapped_and_given_back():
    plain = _accounting("plain")
    assert plain["mmapped_while_held"] >= BLOCK
    assert plain["heap_after_free"] < BLOCK


def test_with_the_setting_it_comes_from_the_heap_and_stays_there_for_reuse():
    tuned = _accounting("tuned")
    assert tuned["mmapped_while_held"] < BLOCK
    assert tuned["heap_after_free"] >= BLOCK


def test_training_leaves_the_policy_to_the_entry_point():
    # After torch's own allocations only the block's share of the accounting tells.
    assert _accounting("after_fit")["mmapped_for_block"] >= BLOCK
