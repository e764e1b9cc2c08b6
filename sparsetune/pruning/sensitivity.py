"""Sensitivity-driven regularisation (Tartaglione et al., NeurIPS 2018): the method, its
helpers (S, Sb, labels from the loss gradient) and its config. See `SensitivityRegularization`
and docs/methods.md."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from sparsetune.config import TrainConfig
from sparsetune.pruning.base import MethodConfig, PruningMethod
from sparsetune.pruning.masking import MaskSet, find_masks
from sparsetune.pruning.plans import PruneDuringTraining, RateSchedule, RoundInfo, rate_factor


class SensitivityConfig(MethodConfig):
    variant: Literal["unspecific", "specific"] = "unspecific"
    # lambda of the update rule; the per-step factor 1 - lmbda * Sb must stay in [0, 1].
    lmbda: float = Field(1e-4, gt=0, le=1, description="decay strength lambda, per step")
    threshold: float = Field(1e-3, gt=0, le=1, description="T: prune |w| < T after each round")
    epochs: int = Field(10, ge=1, le=10_000, description="most epochs of regularised training")
    prune_every: int = Field(1, ge=1, le=1000, description="epochs between two thresholdings")
    tolerance: float = Field(
        0.01, ge=0, le=1, description="largest allowed drop of val_acc below the dense model's"
    )
    # 1 stops at the first round past the tolerance, as the paper does; more lets a run recover
    # from an early dip (plans.PruneDuringTraining).
    patience: int = Field(
        1, ge=1, le=10_000, description="rounds past the tolerance in a row that stop the run"
    )
    output: Literal["softmax", "logits"] = "softmax"
    # How S averages over the batch: the mean of each example's |dy/dw| (the paper's S), or
    # |d/dw of the batch-mean output|, cheaper but cancelling across examples (docs/methods.md).
    estimate: Literal["per_example", "batch_mean"] = "per_example"
    lr: float = Field(0.1, gt=0, le=10, description="SGD learning rate eta")
    momentum: float = Field(0.0, ge=0, lt=1)
    # Not in the 2018 equations (1 is the paper): Sb = max(0, 1 - scale S). With the softmax, S
    # is a mean of small per-example values, so at 1 almost no weight is protected and the term
    # is a uniform decay; the LeNet-300-100 recipe uses 100 (docs/methods.md).
    sensitivity_scale: float = Field(
        1.0, gt=0, le=1e6, description="factor on S before the bound max(0, 1 - scale S)"
    )
    # Not in the paper (constant, the default, is): cosine anneals lr and lambda together over
    # the rounds, so their ratio (the penalty's weight against the loss) holds while the noise of
    # SGD fades, and the last rounds are measured at a settled network (docs/methods.md).
    lr_schedule: RateSchedule = "constant"

    @model_validator(mode="after")
    def _rounds_fit(self) -> SensitivityConfig:
        if self.prune_every > self.epochs:
            raise ValueError(
                f"prune_every ({self.prune_every}) must be at most epochs ({self.epochs})"
            )
        return self


def output_sensitivity(
    outputs: torch.Tensor, weights: Sequence[torch.Tensor], labels: torch.Tensor | None = None
) -> list[torch.Tensor]:
    """S(y, w) for each tensor in `weights`, from the (batch, C) outputs `y` still holding their
    graph (kept: `retain_graph`).

    `labels` None: unspecific, S = sum_k |d/dw mean_n y_nk|, the C backward passes batched into one
    vmapped call. With labels: specific, S = |d/dw mean_n y_{n, label_n}|, one backward pass.
    """
    grads = directional_grads(outputs, weights, labels, scale=1 / outputs.shape[0])
    return [grad.abs().sum(0) for grad in grads]


def directional_grads(
    outputs: torch.Tensor,
    inputs: Sequence[torch.Tensor],
    labels: torch.Tensor | None,
    scale: float = 1.0,
) -> list[torch.Tensor]:
    """d(y . direction)/d(input) for each input, with a leading axis over the directions: the C
    one-hot classes, each selecting output k of every example (unspecific, one batched call), or
    one direction selecting each example's own class (specific, one backward pass)."""
    batch, classes = outputs.shape
    if labels is not None:
        direction = F.one_hot(labels, classes).to(outputs.dtype) * scale
        grads = torch.autograd.grad(outputs, inputs, direction, retain_graph=True)
        return [grad.unsqueeze(0) for grad in grads]
    eye = torch.eye(classes, dtype=outputs.dtype, device=outputs.device)
    directions = eye.unsqueeze(1).expand(classes, batch, classes) * scale  # (C, batch, C)
    return list(
        torch.autograd.grad(outputs, inputs, directions, retain_graph=True, is_grads_batched=True)
    )


def per_example_sensitivity(
    outputs: torch.Tensor,
    layers: Sequence[tuple[nn.Module, torch.Tensor, torch.Tensor]],
    labels: torch.Tensor | None = None,
) -> list[torch.Tensor]:
    """S(y, w) = mean_n sum_k alpha_k |dy_nk / dw| for the weight of each (module, input, output)
    in `layers`, the Linear or Conv2d forwards that produced `outputs` (still holding their graph).

    One batched backward gives dy_nk / d(layer output) for every example and class at once (an
    example's outputs depend on its own activations only, which BatchNorm in training mode breaks:
    there it is an approximation). A weight's per-example derivative is then the outer product with
    the layer's input (Linear) or its sum over positions (Conv2d, through `unfold`); the absolute
    value is taken per example and class before averaging, so opposite signs do not cancel.
    `labels` None: unspecific (every class); with labels: specific (each example's own class).
    """
    batch = outputs.shape[0]
    grads = directional_grads(outputs, [output for _, _, output in layers], labels)
    sensitivities = []
    for (module, inputs, _), grad in zip(layers, grads, strict=True):
        if isinstance(module, nn.Linear):  # |g x| = |g| |x|: one matrix product per layer
            s = torch.einsum("cbo,bi->oi", grad.abs(), inputs.abs())
        else:
            columns = F.unfold(
                inputs, module.kernel_size, module.dilation, module.padding, module.stride
            )  # (batch, in x kh x kw, positions)
            s = torch.zeros_like(module.weight).flatten(1)
            for per_class in grad.flatten(3):  # one class at a time bounds the memory
                s += torch.einsum("bop,bip->boi", per_class, columns).abs().sum(0)
            s = s.view_as(module.weight)
        sensitivities.append(s / batch)
    return sensitivities


def supports_per_example(module: nn.Module) -> bool:
    """Linear, or Conv2d with one group and zero padding given in numbers (what `unfold` does)."""
    if isinstance(module, nn.Linear):
        return True
    return (
        isinstance(module, nn.Conv2d)
        and module.groups == 1
        and module.padding_mode == "zeros"
        and not isinstance(module.padding, str)
    )


def insensitivity(sensitivity: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Sb = max(0, 1 - scale S): 1 for a weight the output ignores, 0 from scale S >= 1 on."""
    return (1 - scale * sensitivity).clamp(min=0)


def labels_from_cross_entropy_grad(logits: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """The targets of a mean cross-entropy loss, read from its gradient at the logits.

    dL/dz = (softmax(z) - onehot(t)) / B: every entry is >= 0 except the true class's. A row with
    no negative entry has p_t = 1 in floating point, so its label is its argmax.
    """
    negative = grad < 0
    if (negative.sum(1) > 1).any():
        raise RuntimeError(
            "specific sensitivity reads the labels from the gradient of a plain cross-entropy "
            "loss at the logits; this gradient has several negative entries in a row, so the "
            "loss is something else"
        )
    return torch.where(negative.any(1), grad.argmin(1), logits.argmax(1))


class SensitivityRegularization(PruningMethod):
    """Sensitivity-driven regularisation (Tartaglione, Lepsøy, Fiandrotti & Francini, "Learning
    sparse neural networks via sensitivity-driven regularization", NeurIPS 2018).

    A weight whose change hardly moves the network's output is decayed towards zero; a threshold
    then prunes it. The paper's equations (section 3):
    - sensitivity of the C outputs y to a weight w: S(y, w) = sum_k alpha_k |dy_k / dw|;
      `unspecific`: alpha_k = 1 for every k; `specific`: alpha_k = 1 for the true class only;
    - bounded insensitivity: Sb(y, w) = max(0, 1 - S(y, w)), in [0, 1] (here max(0, 1 - scale
      S), `sensitivity_scale` 1 by default: the paper);
    - update: w <- w - eta dL/dw - lambda * w * Sb(y, w) (the gradient of the penalty
      lambda/2 * sum_w w^2 (1 - S), S held fixed);
    - every so often, weights with |w| < T are set to zero and stay there; stop when validation
      accuracy worsens past a tolerance.

    How it is built here:
    - The decay is applied *after* the optimiser's step, in `on_step_end`, as the update rule
      reads: eta does not multiply it and it never enters the optimiser's momentum. The authors'
      later code for the same family (EIDOSLAB/LOBSTER) does the same: `p -= lmbda * p *
      relu(1 - S)` right after `optimizer.step()`. S is measured on the step's batch, at the
      weights its gradient was taken at.
    - S is exact, and measured inside the step's own backward, from a gradient hook on the
      network's output (the loop's hooks do not see the batch: there the forward graph is alive
      and the labels can be read), so there is no second forward. Two estimates over the batch:
      - `per_example` (the default, the paper's S): the mean over examples of |dy_nk/dw|. One
        backward, batched over the C output directions, gives dy_nk/d(layer output) for every
        masked layer; the forward hooks recorded each layer's input, and a weight's per-example
        derivative is the outer product (Linear) or its sum over positions (Conv2d, by `unfold`).
      - `batch_mean`: |d/dw mean_n y_nk|, one backward to the weights batched over the C
        directions (`is_grads_batched`); opposite signs across examples cancel, so S is smaller.
        Layers the per-example path does not cover (Conv1d/3d, grouped convolutions, string
        padding) use it under `per_example` too.
    - Pruned weights: the mask parametrization makes dy/dw exactly 0 there (S = 0, Sb = 1) and
      w = 0, so the decay is 0; it is also multiplied by the mask, so a pruned weight receives no
      decay whatever its stored value.

    Deviations from the paper, on purpose (docs/methods.md has the full list):
    - BatchNorm in training mode makes an example's output depend on the other examples', so
      there the per-example S counts those cross terms too (an approximation; no LeNet has BN).
    - Labels for `specific` are read from the gradient of the loop's mean cross-entropy at the
      logits, (softmax(z) - onehot(t)) / B, whose only negative entry per row is the true class
      (a row with none is predicted with probability 1, so its label is its argmax). Any other
      loss raises rather than guessing.
    - y is the softmax output by default *(approx.: the paper leaves pre- vs post-softmax open)*;
      `output="logits"` uses the pre-softmax scores.
    - `sensitivity_scale` multiplies S inside the bound, max(0, 1 - scale S): 1 (the default) is
      the paper's equation; the LeNet-300-100 recipe's 100 is a deviation.
    - Plan (`PruneDuringTraining`): start from the trained dense model of the shared dense
      stage (the paper's two-step procedure: reach performance, then regularise and threshold).
      Each round trains `prune_every` epochs with the regulariser, then prunes |w| < T (absolute,
      the same for every layer, as in the paper). A round more than `tolerance` below the dense
      model's validation accuracy is neither reported nor kept; `patience` such rounds in a row
      (1, the paper's rule, by default) end the run at the last round within the tolerance; at
      most `epochs // prune_every` rounds run.
    - Optimiser: plain SGD at a constant rate `lr`, no momentum by default (the update rule has
      none), no L2 (the sensitivity term replaces it) *(approx.: the paper's rates and epoch
      counts are not reproduced)*. `lr_schedule="cosine"` anneals lr and lambda together over the
      rounds (a deviation; the LeNet-300-100 recipe's).
    """

    Config = SensitivityConfig
    key_params = (
        "variant",
        "lmbda",
        "threshold",
        "sensitivity_scale",
        "epochs",
        "prune_every",
        "tolerance",
        "patience",
    )
    config: SensitivityConfig
    # w <- w (1 - lambda Sb) each step: over S steps an insensitive weight keeps about
    # exp(-lambda S), so a shorter run shrinks it as far with lambda raised as S fell.
    per_step_knobs = {"lmbda": "epochs"}

    def __init__(self, config: SensitivityConfig):
        super().__init__(config)
        # Sb per masked weight, measured during the current step's backward, used at its end.
        self._insensitivity: dict[str, torch.Tensor] = {}
        # (module, input, output) of each masked layer in the current training forward.
        self._layer_io: dict[str, tuple[nn.Module, torch.Tensor, torch.Tensor]] = {}
        # This round's factor on lr and lambda (`lr_schedule`).
        self._rate = 1.0

    def plan(self) -> PruneDuringTraining:
        config = self.config
        return PruneDuringTraining(
            rounds=config.epochs // config.prune_every,
            epochs_per_round=config.prune_every,
            tolerance=config.tolerance,
            patience=config.patience,
        )

    def begin_round(self, round_info: RoundInfo) -> None:
        self._rate = rate_factor(self.config.lr_schedule, round_info.index, round_info.total)

    def retrain_recipe(self, dense: TrainConfig) -> TrainConfig:
        # The update rule is plain SGD plus the sensitivity term; L2 would be a second decay.
        return dense.model_copy(
            update={
                "optimizer": "sgd",
                "lr": self.config.lr * self._rate,
                "momentum": self.config.momentum,
                "weight_decay": 0.0,
                "schedule": "constant",
            }
        )

    def attach(self, model: nn.Module, masks: MaskSet) -> None:
        # The hooks are found again through the model (not stored here), so a deepcopied model
        # carries a working copy of them.
        model.register_forward_hook(self._watch_output)
        if self.config.estimate == "per_example":
            for name in masks:
                module = model.get_submodule(name.rpartition(".")[0])
                if supports_per_example(module):
                    # prepend: where the model is itself the layer, record its output before
                    # `_watch_output` replaces it, so that the output stays upstream of y.
                    hook = functools.partial(self._record_layer, name)
                    module.register_forward_hook(hook, prepend=True)

    def _record_layer(
        self, name: str, module: nn.Module, args: tuple, output: torch.Tensor
    ) -> None:
        """Forward hook of a masked layer: keep its input and output for the per-example S."""
        if module.training and torch.is_grad_enabled():
            inputs = args[0]
            if inputs.dim() == (2 if isinstance(module, nn.Linear) else 4):
                self._layer_io[name] = (module, inputs, output)

    def _watch_output(self, model: nn.Module, args: tuple, output: torch.Tensor):
        """Forward hook: on a training forward, route the output through a view whose gradient
        hook computes S while the forward graph is alive."""
        if not (model.training and torch.is_grad_enabled()):
            return None
        masks = find_masks(model)
        if masks is None or not isinstance(output, torch.Tensor) or output.dim() != 2:
            return None
        # y as a new node (view or softmax), so that a recorded layer output is upstream of it
        # even where the model is that layer.
        outputs = torch.softmax(output, dim=1) if self.config.output == "softmax" else output[:]
        # The loss reaches the graph through `passthrough`; S's own backward starts at `outputs`
        # and never passes this hook, so the hook cannot call itself.
        passthrough = output.view_as(output)
        passthrough.register_hook(functools.partial(self._measure, masks, output.detach(), outputs))
        return passthrough

    def _measure(
        self,
        masks: MaskSet,
        logits: torch.Tensor,
        outputs: torch.Tensor,
        grad: torch.Tensor,
    ) -> None:
        names = list(masks)
        labels = None
        if self.config.variant == "specific":
            labels = labels_from_cross_entropy_grad(logits, grad)
        batch = outputs.shape[0]
        recorded = [
            n for n in names if n in self._layer_io and self._layer_io[n][1].shape[0] == batch
        ]
        rest = [n for n in names if n not in recorded]
        sensitivities = {}
        if recorded:
            layers = [self._layer_io[name] for name in recorded]
            found = per_example_sensitivity(outputs, layers, labels)
            # dy/dw of a pruned weight is 0 through the mask parametrization; here too.
            sensitivities |= {n: s * masks[n] for n, s in zip(recorded, found, strict=True)}
        if rest:
            weights = [masks.stored_weight(name) for name in rest]
            sensitivities |= dict(
                zip(rest, output_sensitivity(outputs, weights, labels), strict=True)
            )
        self._layer_io = {}
        scale = self.config.sensitivity_scale
        self._insensitivity = {name: insensitivity(sensitivities[name], scale) for name in names}

    @torch.no_grad()
    def on_step_end(self, model: nn.Module) -> None:
        """w <- w - lambda * w * Sb(w), after the optimiser's step (not scaled by eta; under
        `lr_schedule` cosine, lambda follows the same factor as eta)."""
        if not self._insensitivity:
            return
        masks = find_masks(model)
        lmbda = self.config.lmbda * self._rate
        for name, sb in self._insensitivity.items():
            weight = masks.stored_weight(name)
            weight.sub_(lmbda * weight * sb * masks[name])
        self._insensitivity = {}

    @torch.no_grad()
    def compute_masks(
        self, model: nn.Module, masks: MaskSet, round_info: RoundInfo
    ) -> dict[str, torch.Tensor]:
        """Keep |w| >= T (the effective weight, so a pruned one stays pruned)."""
        return {name: masks.effective_weight(name).abs() >= self.config.threshold for name in masks}
