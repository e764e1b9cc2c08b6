"""L0 regularisation with hard-concrete gates (Louizos, Welling & Kingma, "Learning Sparse Neural
Networks through L0 Regularization", ICLR 2018; official code AMLab-Amsterdam/L0_regularization,
`l0_layers.py`).

Every group of weights (one weight, or one neuron / output channel) is multiplied by a gate z drawn
from the hard-concrete distribution with a learnt location log_alpha (section 2.2):

    u ~ U(0, 1),  s = sigmoid((log u - log(1 - u) + log_alpha) / beta),
    s_bar = s (zeta - gamma) + gamma,  z = min(1, max(0, s_bar)),

with beta = 2/3, gamma = -0.1, zeta = 1.1. The expected L0 norm has the closed form

    P(z != 0) = sigmoid(log_alpha - beta log(-gamma / zeta))

(the paper's complexity term, 1 - Q(s <= 0)), and the loss is the data loss of the gated network
plus, as in the official code's `_reg_w` and the paper's L0 + L2 and group-sparsity variants,

    (1 / N) sum_groups P(z_g != 0) (lambda_layer |g| + 0.5 wd ||theta_g||^2),

where |g| counts the group's weights (a neuron's gate removes |g| weights) and N is the
training-set size: the paper's "lambda = 0.1 / N" is `l0_lambda = 0.1` here. At test time the gate
is deterministic (Eq. 13): z = min(1, max(0, sigmoid(log_alpha) (zeta - gamma) + gamma)),
which has exact zeros. After training, `compute_masks` folds that z into the stored weights, turns
the gates off, and returns masks z != 0: the final model is plain weights times binary masks.

`granularity: neuron` gates the input neurons (columns) of fully connected layers and the output
channels of convolutions, as the official `L0Dense` and `L0Conv2d` do; `weight` gives each weight
its own gate (the paper's general form; the official code has no such layer).

Deviations from the paper and the official code, on purpose:
- Gates are a second parametrization on each prunable weight (after the binary mask), not custom
  layers: one gate sample per minibatch multiplies the weights, as the official code does when
  `local_rep` is off; the official layers' eval-time trick of gating the layer's *input* for fc
  layers is the same function.
- `weight_decay` is per example like lambda (divided by N), as the official LeNet-5 script uses
  it; the official MLP class multiplies its weight decay by N first.
- Biases are never gated; each gated layer's bias pays an ungated 0.5 wd ||b||^2 / N, as in the
  official `L0Dense`. The official `L0Conv2d` gates its bias term with -lambda where the weights
  get +lambda (apparently a sign slip), and in training mode drops the conv bias altogether; we
  keep the bias in both modes.
- N is the size of our training split (the published train set less the validation hold-out);
  the official scripts use N = 60000, the whole MNIST train set.
- |g| counts the group's weights still unmasked (equal to the official full count, since masks
  are all ones while the gates train).
- No exponential moving average of the weights at evaluation (the official MLP uses 0.999).
- `gate_lr_factor` (default 1, the official behaviour) stores log_alpha as factor x a parameter;
  under Adam this multiplies the gates' effective learning rate by the factor, so that sweeps
  far shorter than the paper's 200 epochs can still move log_alpha the ~2.4 it takes to close a
  gate from its initial value.
- Training starts from theta_0 of the shared dense run (`start: init`; the paper trains from
  scratch) or from the trained dense weights (`start: dense`, faster in short sweeps).
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import torch
from pydantic import Field
from torch import nn
from torch.nn.utils import parametrize

from sparsetune.config import TrainConfig
from sparsetune.pruning.base import MethodConfig, PruningMethod
from sparsetune.pruning.masking import (
    MaskSet,
    WeightMask,
    check_layer_names,
    find_parametrizations,
)
from sparsetune.pruning.plans import RoundInfo, TrainThenPrune

# The paper's and the official code's constants (section 4; l0_layers.py: limit_a, limit_b).
BETA = 2.0 / 3.0  # temperature of the concrete distribution
GAMMA = -0.1  # lower end of the stretched interval
ZETA = 1.1  # upper end
EPSILON = 1e-6  # official: u is drawn from [eps, 1 - eps]; P(z != 0) clamped to it
LOG_ALPHA_MIN = math.log(1e-2)  # official `constrain_parameters`, applied after every step
LOG_ALPHA_MAX = math.log(1e2)
_CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def probability_nonzero(log_alpha: torch.Tensor) -> torch.Tensor:
    """P(z != 0) = sigmoid(log_alpha - beta log(-gamma / zeta)), clamped as the official cdf_qz."""
    shift = BETA * math.log(-GAMMA / ZETA)
    return torch.sigmoid(log_alpha - shift).clamp(EPSILON, 1 - EPSILON)


def sample_gate(log_alpha: torch.Tensor) -> torch.Tensor:
    """One draw of the hard-concrete gate (section 2.2), differentiable in log_alpha."""
    u = torch.empty_like(log_alpha).uniform_(EPSILON, 1 - EPSILON)
    s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + log_alpha) / BETA)
    return (s * (ZETA - GAMMA) + GAMMA).clamp(0.0, 1.0)


def deterministic_gate(log_alpha: torch.Tensor) -> torch.Tensor:
    """The test-time gate (Eq. 13): min(1, max(0, sigmoid(log_alpha) (zeta - gamma) + gamma))."""
    return (torch.sigmoid(log_alpha) * (ZETA - GAMMA) + GAMMA).clamp(0.0, 1.0)


class HardConcreteGate(nn.Module):
    """A parametrization `weight -> weight * z`: z sampled in train mode, deterministic in eval.

    `axis` None gives one gate per weight; otherwise one gate per index along `axis` (1: input
    neurons of a Linear, 0: output channels of a convolution). `active` is a buffer, so that a
    folded (switched-off) gate survives state_dict round trips; when off the gate is the identity.
    """

    def __init__(
        self,
        weight_shape: torch.Size,
        axis: int | None,
        log_alpha: torch.Tensor,
        lambda_layer: float,
        lr_factor: float = 1.0,
    ):
        super().__init__()
        self.axis = axis
        self.lambda_layer = lambda_layer
        self.lr_factor = lr_factor
        self.weight_dims = len(weight_shape)
        # log_alpha = lr_factor * log_alpha_scaled: see the module docstring (gate_lr_factor).
        self.log_alpha_scaled = nn.Parameter(log_alpha / lr_factor)
        self.register_buffer("active", torch.ones((), dtype=torch.bool, device=log_alpha.device))

    @property
    def log_alpha(self) -> torch.Tensor:
        return self.log_alpha_scaled * self.lr_factor

    def expand(self, per_group: torch.Tensor) -> torch.Tensor:
        """A per-group tensor shaped to broadcast against the weight."""
        if self.axis is None:
            return per_group
        shape = [1] * self.weight_dims
        shape[self.axis] = -1
        return per_group.view(shape)

    def group_sum(self, per_weight: torch.Tensor) -> torch.Tensor:
        """Sum a per-weight tensor over each gate's group."""
        if self.axis is None:
            return per_weight
        dims = [d for d in range(per_weight.dim()) if d != self.axis]
        return per_weight.sum(dim=dims)

    def gate(self) -> torch.Tensor:
        log_alpha = self.log_alpha
        return sample_gate(log_alpha) if self.training else deterministic_gate(log_alpha)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        # torch.where rather than `if self.active`: no host sync per step on a GPU.
        z = torch.where(self.active, self.gate(), torch.ones((), device=weight.device))
        return weight * self.expand(z)


def find_gates(model: nn.Module) -> dict[str, tuple[nn.Module, HardConcreteGate]]:
    """Full weight name -> (its module, its gate), for every gated weight of `model`."""
    return find_parametrizations(model, HardConcreteGate)


Scale = Annotated[float, Field(ge=0, le=1000)]


class L0Config(MethodConfig):
    l0_lambda: float = Field(
        0.1, ge=0, le=1e4, description="lambda per training example: 0.1 means the paper's 0.1/N"
    )
    conv_lambda_scale: Scale = Field(1.0, description="lambda multiplier for conv layers")
    fc_lambda_scale: Scale = Field(1.0, description="lambda multiplier for fc layers")
    layer_lambda_scales: dict[str, Scale] = Field(
        default_factory=dict,
        description='per-layer lambda multipliers by module name, e.g. {"fc1": 10} ("lambda sep.")',
    )
    weight_decay: float = Field(5e-4, ge=0, le=1, description="L2 inside the penalty, per example")
    granularity: Literal["weight", "neuron"] = "neuron"
    droprate_init: float = Field(0.5, gt=0, lt=1, description="initial P(gate closed)")
    droprate_init_mlp_input: float = Field(
        0.2, gt=0, lt=1, description="droprate_init of an MLP's input layer (official: 0.2)"
    )
    start: Literal["init", "dense"] = "init"
    epochs: int = Field(10, ge=0, le=1000, description="gated training (paper: 200)")
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0, le=1)
    batch_size: int = Field(100, ge=1, le=100_000)
    gate_lr_factor: float = Field(1.0, gt=0, le=1000)


class L0Regularization(PruningMethod):
    Config = L0Config
    key_params = ("l0_lambda", "granularity", "droprate_init", "epochs", "start")
    # Under Adam log_alpha moves about lr x gate_lr_factor a step whatever lambda is, so a
    # shorter run closes as many gates only with a faster gate rate.
    per_step_knobs = {"gate_lr_factor": "epochs"}
    config: L0Config

    def __init__(self, config: L0Config):
        super().__init__(config)
        self.dataset_size: int | None = None  # N; set by `bind_data` before training

    def plan(self) -> TrainThenPrune:
        return TrainThenPrune(epochs=self.config.epochs, from_init=self.config.start == "init")

    def length_note(self, train_size: int) -> str | None:
        """Under Adam log_alpha moves at most about lr x gate_lr_factor a step; a run whose
        steps cannot carry a gate from its initial log_alpha to where the test-time gate is 0
        (Eq. 13: sigmoid(log_alpha) = -gamma / (zeta - gamma)) closes none."""
        config = self.config
        steps = config.epochs * math.ceil(train_size / config.batch_size)
        per_step = config.lr * config.gate_lr_factor
        start = math.log(1 - config.droprate_init) - math.log(config.droprate_init)
        closed = -GAMMA / (ZETA - GAMMA)
        needed = start - (math.log(closed) - math.log(1 - closed))
        if steps * per_step >= needed:
            return None
        per_epoch = math.ceil(train_size / config.batch_size)
        # More epochs would not do under `--epochs`: the gate rate falls as the run lengthens.
        factor = float(f"{needed / (steps * config.lr):.2g}")
        return (
            f"l0 will not prune in this run: {config.epochs} epochs x {per_epoch} steps move a "
            f"gate's log_alpha at most {steps * per_step:.2g} (lr {config.lr:g} x gate_lr_factor "
            f"{config.gate_lr_factor:.3g} a step) and closing one takes {needed:.2g}; gates can "
            f"close only with --set gate_lr_factor={factor:g} or more, or more training data "
            f"than these {train_size} examples"
        )

    def bind_data(self, train_size: int) -> None:
        """N, the training-set size the penalty divides by (lambda and weight decay are per
        training example)."""
        self.dataset_size = train_size

    def retrain_recipe(self, dense: TrainConfig) -> TrainConfig:
        # The official recipe: Adam at 1e-3, constant rate, batch 100. Weight decay lives in the
        # penalty (gated by P(z != 0)), so the optimiser's must be off or it would apply twice.
        config = self.config
        return dense.model_copy(
            update={
                "optimizer": config.optimizer,
                "lr": config.lr,
                "weight_decay": 0.0,
                "schedule": "constant",
                "batch_size": config.batch_size,
                "epochs": config.epochs,
            }
        )

    def check_layers(self, weight_names: list[str]) -> None:
        check_layer_names("layer_lambda_scales", self.config.layer_lambda_scales, weight_names)

    def attach(self, model: nn.Module, masks: MaskSet) -> None:
        """Register a gate after each weight's mask; log_alpha = log(1 - d) - log d + N(0, 0.01)."""
        if find_gates(model):
            return  # already gated (e.g. a deepcopy of an attached model)
        config = self.config
        names = list(masks)
        modules = {name: model.get_submodule(name.rpartition(".")[0]) for name in names}
        # The official MLP starts its input layer with more gates open (d = 0.2, models.py).
        is_mlp = all(isinstance(module, nn.Linear) for module in modules.values())
        for index, name in enumerate(names):
            module = modules[name]
            module_name, _, tensor_name = name.rpartition(".")
            weight = masks.stored_weight(name)
            is_conv = isinstance(module, _CONV_TYPES)
            if config.granularity == "weight":
                axis = None
                shape = weight.shape
            else:  # neuron: conv output channels, fc input neurons (official L0Conv2d, L0Dense)
                axis = 0 if is_conv else 1
                shape = torch.Size([weight.shape[axis]])
            droprate = (
                config.droprate_init_mlp_input if is_mlp and index == 0 else (config.droprate_init)
            )
            log_alpha = torch.empty(shape, device=weight.device, dtype=weight.dtype).normal_(
                math.log(1 - droprate) - math.log(droprate), 1e-2
            )
            scale = config.conv_lambda_scale if is_conv else config.fc_lambda_scale
            lambda_layer = config.l0_lambda * scale * config.layer_lambda_scales.get(module_name, 1)
            gate = HardConcreteGate(
                weight.shape, axis, log_alpha, lambda_layer, config.gate_lr_factor
            )
            parametrize.register_parametrization(module, tensor_name, gate)

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        """(1/N) sum_g P(z_g != 0) (lambda_layer |g| + 0.5 wd ||theta_g||^2) + 0.5 wd ||b||^2 / N,
        the official `regularization()`; zero once the gates are folded."""
        gates = find_gates(model)
        if not gates:
            return None
        if self.dataset_size is None:
            raise RuntimeError(
                "L0Regularization.penalty: the training-set size N is unknown; call "
                "`bind_data(train_size)` before training (a trial does)"
            )
        wd = self.config.weight_decay
        total = None
        for module, gate in gates.values():
            parametrizations = module.parametrizations.weight
            mask = next(p.mask for p in parametrizations if isinstance(p, WeightMask))
            # Masked stored weight: pruned positions get exactly zero gradient from the L2 term.
            weight = parametrizations.original * mask
            cost = gate.lambda_layer * gate.group_sum(mask) + 0.5 * wd * gate.group_sum(weight**2)
            term = (probability_nonzero(gate.log_alpha) * cost).sum()
            if module.bias is not None:
                term = term + 0.5 * wd * module.bias.pow(2).sum()
            term = term * gate.active  # folded: the method's training is over
            total = term if total is None else total + term
        return total / self.dataset_size

    @torch.no_grad()
    def on_step_end(self, model: nn.Module) -> None:
        """Clamp log_alpha to [log 0.01, log 100] after every step (official)."""
        for _, gate in find_gates(model).values():
            factor = gate.lr_factor
            gate.log_alpha_scaled.clamp_(LOG_ALPHA_MIN / factor, LOG_ALPHA_MAX / factor)

    @torch.no_grad()
    def compute_masks(
        self, model: nn.Module, masks: MaskSet, round_info: RoundInfo
    ) -> dict[str, torch.Tensor]:
        """Masks = deterministic gate != 0. The surviving z is folded into the stored weight and
        the gate switched off, so the model computes the same function with a binary mask."""
        gates = find_gates(model)
        new_masks = {}
        for name in masks:
            if name not in gates:
                continue
            _, gate = gates[name]
            if not bool(gate.active):
                continue  # already folded: nothing left to learn from this gate
            z = gate.expand(deterministic_gate(gate.log_alpha))
            stored = masks.stored_weight(name)
            stored.mul_(z)
            gate.active.fill_(False)
            new_masks[name] = (z != 0).expand_as(stored)
        return new_masks
