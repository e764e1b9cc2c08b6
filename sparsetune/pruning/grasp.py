"""GraSP: gradient signal preservation (Wang, Zhang & Grosse, "Picking Winning Tickets Before
Training by Preserving Gradient Flow", ICLR 2020).

At initialisation, keep the weights that preserve the gradient flow ||g||^2 of the network. With g
the loss gradient and H the Hessian, removing a weight delta = -theta_q changes the gradient norm
to first order by 2 delta^T H g, which gives the score (paper section 4)

    S(-theta) = -theta (.) H g          (elementwise product)

A large score means removing the weight reduces the gradient flow least (or raises it), so the
weights with the *highest* scores are removed and the rest kept, over all layers together.
H g comes from double back-propagation, without forming H:

    g = grad L(theta) (detached),    z = g . grad L(theta),    H g = grad z.

Official code (alecwangcq/GraSP, `pruner/GraSP.py`), followed here:
- logits divided by a temperature T (200) while scoring, to keep the softmax from saturating;
- a class-balanced batch of `samples_per_class` examples per class (10 in the CIFAR configs),
  concatenated class by class and split into two halves; g is the sum of the halves' gradients,
  and H g the sum of each half's Hessian applied to that g;
- fully connected layers re-initialised with Xavier-normal for scoring only: the scores are taken
  on a copy, and the network that trains keeps its theta_0 (`xavier_fc_scoring`, default on, as
  the official `reinit=True`; for an all-fc model such as LeNet-300-100 this scores every layer
  on weights other than those trained: turn it off to score theta_0 itself);
- scores normalised by |sum of all scores| + 1e-10 (a positive factor: the ranking is unchanged).

Deviations, on purpose:
- Exactly round(ratio * m) weights are removed, ties at the threshold broken by `torch.topk`. The
  official code removes every score strictly above the int(ratio * m)-th largest, so it keeps that
  score and all ties with it (one weight fewer removed when there are no ties). The contract
  requires the target sparsity exactly; with float scores ties are rare.
- The class-balanced batch is taken from the first `scoring_pool` examples of the trial's seeded
  permutation of the training set (`TrialContext.scoring_batch`), walked in order as the official
  `GraSP_fetch_data` walks a shuffled loader; a class with fewer than `samples_per_class` examples
  in that pool contributes what it has, where the official loop would keep drawing.
- theta_0 is the shared dense run's initialisation (the model's own initialiser); the official
  script applies Kaiming-normal to every layer first. The Xavier draws for scoring come from a
  generator seeded by the trial, so a trial is reproducible.
- One scoring iteration: the official `num_iters` (default 1) is not offered.
- Biases and BatchNorm are neither scored nor pruned, as in the official code (conv and linear
  weights only). Scoring runs in train mode, as the official code never calls `eval()`.
- The official training script reports the best *test* accuracy over epochs; sparsetune selects
  on its validation split and reports test once (see docs/methods.md).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from sparsetune.pruning.base import Batch
from sparsetune.pruning.init_scoring import (
    AtInitConfig,
    AtInitMethod,
    class_balanced,
    loss_gradients,
    model_mode,
    scored_weights,
    trial_generator,
)
from sparsetune.pruning.masking import MaskSet, find_masks
from sparsetune.pruning.plans import RoundInfo

# The official code's guard against a zero normaliser.
NORMALISER_EPS = 1e-10
XAVIER_SALT = 2


class GraSPConfig(AtInitConfig):
    samples_per_class: int = Field(10, ge=1, le=10_000, description="class-balanced batch size")
    temperature: float = Field(200.0, gt=0, le=1e6, description="logits divided by T to score")
    scoring_pool: int = Field(
        5000, ge=1, le=10_000_000, description="shuffled training examples the batch comes from"
    )
    xavier_fc_scoring: bool = Field(True, description="score fc layers at a Xavier re-draw")


def hessian_gradient_product(
    weights: Sequence[torch.Tensor], losses: Sequence[Callable[[], torch.Tensor]]
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(g, H g) for the summed loss L = sum_i L_i, each L_i given as a closure that recomputes it.

    g = sum_i grad L_i. Then for each part, z_i = g(detached) . grad L_i with the graph kept, and
    H g = sum_i grad z_i: one double back-propagation per part, as the official code does."""
    weights = list(weights)
    gradient = [torch.zeros_like(w) for w in weights]
    for loss in losses:
        for total, part in zip(gradient, loss_gradients(loss(), weights), strict=True):
            total += part.detach()
    hessian_gradient = [torch.zeros_like(w) for w in weights]
    for loss in losses:
        first = loss_gradients(loss(), weights, create_graph=True)
        z = sum((g * f).sum() for g, f in zip(gradient, first, strict=True))
        second = torch.autograd.grad(z, weights, allow_unused=True)
        for total, part in zip(hessian_gradient, second, strict=True):
            if part is not None:  # a weight the gradient does not depend on: H g is zero there
                total += part.detach()
    return gradient, hessian_gradient


def grasp_scores(
    weights: Sequence[torch.Tensor], losses: Sequence[Callable[[], torch.Tensor]]
) -> list[torch.Tensor]:
    """S(-theta) = -theta (.) H g for each weight (not normalised); highest = removed first."""
    _, hessian_gradient = hessian_gradient_product(weights, losses)
    return [-w.detach() * hg for w, hg in zip(weights, hessian_gradient, strict=True)]


class GraSP(AtInitMethod):
    """GraSP (Wang et al. 2020): remove the weights whose removal preserves the gradient flow
    best, i.e. the highest -theta (.) H g, on a class-balanced batch at temperature T."""

    Config = GraSPConfig
    key_params = ("sparsity", "samples_per_class", "temperature", "control")
    config: GraSPConfig

    def scoring_examples(self) -> int:
        return self.config.scoring_pool

    def at_init(self, model: nn.Module, masks: MaskSet, batch: Batch, info: RoundInfo) -> None:
        inputs, targets = class_balanced(batch[0], batch[1], self.config.samples_per_class)
        scoring_model, scoring_masks = model, masks
        if self.config.xavier_fc_scoring:
            # A copy, as in the official code: the network that trains keeps its theta_0.
            scoring_model = copy.deepcopy(model)
            copied = find_masks(scoring_model)
            assert copied is not None  # deepcopy keeps the parametrizations
            scoring_masks = copied
            _xavier_fc(scoring_model, scoring_masks, info.seed)
        half = len(inputs) // 2
        parts = [(inputs[:half], targets[:half]), (inputs[half:], targets[half:])]
        temperature = self.config.temperature

        def loss_of(x: torch.Tensor, y: torch.Tensor) -> Callable[[], torch.Tensor]:
            return lambda: F.cross_entropy(scoring_model(x) / temperature, y)

        losses = [loss_of(x, y) for x, y in parts if len(y)]
        with model_mode(scoring_model, training=True):
            scores = grasp_scores(scored_weights(scoring_masks), losses)
        # Already-pruned positions score 0 here (their stored weight is 0); `exclude_pruned`
        # keeps them pruned whatever their score.
        raw = dict(zip(scoring_masks, scores, strict=True))
        normaliser = torch.stack([s.sum() for s in raw.values()]).sum().abs() + NORMALISER_EPS
        self.scores = {name: score / normaliser for name, score in raw.items()}

    def keep_scores(self, scores: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        # Remove the highest scores: keeping the top of -S keeps the lowest S.
        return {name: -score for name, score in scores.items()}


@torch.no_grad()
def _xavier_fc(model: nn.Module, masks: MaskSet, seed: int) -> None:
    """Xavier-normal re-draw of every masked Linear weight (pruned positions stay zero), from one
    generator seeded by the trial's `seed`, so that layers of the same shape get different
    draws."""
    generators: dict[torch.device, torch.Generator] = {}
    for name in masks:
        module = model.get_submodule(name.rpartition(".")[0])
        if isinstance(module, nn.Linear):
            stored = masks.stored_weight(name)
            if stored.device not in generators:
                generators[stored.device] = trial_generator(seed, XAVIER_SALT, stored.device)
            nn.init.xavier_normal_(stored, generator=generators[stored.device])
            stored.mul_(masks[name])
