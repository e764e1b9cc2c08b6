"""SGD and Adam as torch builds them, without torch._dynamo imported when they first run.

torch wraps Optimizer's `add_param_group` (which every constructor calls), `zero_grad`,
`state_dict` and `load_state_dict` in `torch._disable_dynamo`, and each optimizer's `step` in
`_use_grad_for_differentiable`; both import torch._dynamo on their first call, 1.2-1.5
CPU-seconds in every process that trains (each trial worker, a sweep's driver for its dense
stage, every `sparsetune prune`), for guards that matter only under torch.compile, which
sparsetune does not use. sparsetune's optimizers call the same methods without those wrappers
(a step still runs with gradients off, as the wrapper sets them); the update, the state and its
format are torch's own, and no other optimizer in the process is changed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch.optim.optimizer import _use_grad_for_differentiable

# The code object of every function each wrapper returns (one closure, one code each).
_DYNAMO_GUARD = torch._disable_dynamo(lambda: None).__code__
_GRAD_MODE_GUARD = _use_grad_for_differentiable(lambda: None).__code__


def _unwrapped(method: Callable[..., Any], wrapper_code: Any) -> Callable[..., Any] | None:
    """The function under `method`'s wrapper of code `wrapper_code` (following functools.wraps
    chains, e.g. the profiler hook torch puts on a step once an optimizer is built), or None
    where torch no longer wraps it that way."""
    while True:
        if getattr(method, "__code__", None) is wrapper_code:
            return getattr(method, "__wrapped__", None)
        if not hasattr(method, "__wrapped__"):
            return None
        method = method.__wrapped__


def _unguarded(name: str) -> Callable[..., Any]:
    method = getattr(torch.optim.Optimizer, name)
    return _unwrapped(method, _DYNAMO_GUARD) or method


def _eager_step(optimizer_class: type[torch.optim.Optimizer]) -> Callable[..., Any]:
    method = optimizer_class.step
    step = _unwrapped(method, _GRAD_MODE_GUARD)
    if step is None:
        return method

    @functools.wraps(step)
    def eager_step(self, *args: Any, **kwargs: Any) -> Any:
        with torch.set_grad_enabled(self.defaults["differentiable"]):
            return step(self, *args, **kwargs)

    return eager_step


class _Unguarded:
    add_param_group = _unguarded("add_param_group")
    zero_grad = _unguarded("zero_grad")
    state_dict = _unguarded("state_dict")
    load_state_dict = _unguarded("load_state_dict")


class SGD(_Unguarded, torch.optim.SGD):
    """torch.optim.SGD, without the torch._dynamo import."""

    step = _eager_step(torch.optim.SGD)


class Adam(_Unguarded, torch.optim.Adam):
    """torch.optim.Adam, without the torch._dynamo import."""

    step = _eager_step(torch.optim.Adam)
