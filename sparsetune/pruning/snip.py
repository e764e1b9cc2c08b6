"""SNIP: single-shot network pruning based on connection sensitivity (Lee et al., "SNIP:
Single-shot Network Pruning based on Connection Sensitivity", ICLR 2019).

At initialisation, before any training, each weight is scored on one batch D by its connection
sensitivity (paper section 4.1), the magnitude of the loss's derivative with respect to a
multiplicative gate c_q on the weight, at c = 1:

    g_q = dL(c * w; D) / dc_q |_{c=1} = w_q * dL/dw_q,        s_q = |g_q| / sum_k |g_k|

The top kappa = round((1 - ratio) * m) scores over all layers together are kept, and the
sparse network trains normally. Official code: namhoonlee/snip-public (`snip/model.py`).

Deviations, on purpose:
- Biases are not scored or pruned. The official code gates every `w` *and* `b` variable and takes
  one global top-k over both; the paper's counts and papers.md count weights only.
- The network scored is theta_0 of the shared dense run, drawn by the model's own initialiser
  (PyTorch's default for the LeNets). The paper and its code use variance-scaling initialisation;
  sparsetune keeps one initialisation per model so that every method starts from the same theta_0.
- The scoring batch is `scoring_batch` examples drawn at random under the trial's seed
  (`TrialContext.scoring_batch`); the official code takes the next training batch (100 examples).
- The model is scored in eval mode, as the official code feeds `is_train=False` (this only matters
  for BatchNorm and dropout, which the LeNets lack).
- Ties at the threshold are broken by `torch.topk`, so exactly kappa weights survive, as
  TensorFlow's `top_k` in the official code does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from sparsetune.pruning.base import Batch
from sparsetune.pruning.init_scoring import (
    AtInitConfig,
    AtInitMethod,
    loss_gradients,
    model_mode,
    scored_weights,
)
from sparsetune.pruning.masking import MaskSet
from sparsetune.pruning.plans import RoundInfo


class SNIPConfig(AtInitConfig):
    # The official script scores on one training batch of its batch size, 100.
    scoring_batch: int = Field(100, ge=1, le=100_000, description="examples scored on")


def snip_scores(
    model: nn.Module, masks: MaskSet, inputs: torch.Tensor, targets: torch.Tensor
) -> dict[str, torch.Tensor]:
    """|w * dL/dw| = |dL/dc| at c = 1 for each masked weight on the batch (not normalised)."""
    weights = scored_weights(masks)
    loss = F.cross_entropy(model(inputs), targets)  # the mean over the batch, as the official code
    gradients = loss_gradients(loss, weights)
    return {
        name: (masks.effective_weight(name).detach() * gradient).abs()
        for name, gradient in zip(masks, gradients, strict=True)
    }


class SNIP(AtInitMethod):
    """SNIP (Lee et al. 2019): keep the weights with the largest connection sensitivity
    |w * dL/dw| on one batch at initialisation, normalised to sum to one, globally."""

    Config = SNIPConfig
    key_params = ("sparsity", "scoring_batch", "control")
    config: SNIPConfig

    def scoring_examples(self) -> int:
        return self.config.scoring_batch

    def at_init(self, model: nn.Module, masks: MaskSet, batch: Batch, info: RoundInfo) -> None:
        inputs, targets = batch[0], batch[1]
        with model_mode(model, training=False):
            raw = snip_scores(model, masks, inputs, targets)
        # Normalising, s_q = |g_q| / sum_k |g_k|, leaves the ranking as it is; it makes scores
        # comparable across batches and models.
        total = sum(score.sum() for score in raw.values())
        self.scores = {name: score / total for name, score in raw.items()}
