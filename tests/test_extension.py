"""A pruning method from another package, added as the README's "Add a pruning method" says and
without editing any file of this repository: a module with a Config and a class, its search-space
fragment, and one entry point in the group `sparsetune.methods`.

The package is written into a temporary folder with the `.dist-info` folder that pip would have
installed (METADATA and entry_points.txt), and that folder goes on PYTHONPATH. Then the real
`sparsetune` command runs it: `prune` in-process, and a one-trial `search` over the default
LeNet-300-100 space, whose `methods: all` picks up the toy through its fragment (real Ray Tune,
Optuna and MLflow).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import SYNTHETIC_RUN, run_cli, sweep_rows, sweep_runs

TOY_MODULE = '''
"""Toy pruning: global magnitude at a fixed sparsity, in one round of pruning and retraining."""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field
from torch import nn

from sparsetune.pruning.base import MethodConfig, PruningMethod
from sparsetune.pruning.masking import MaskSet
from sparsetune.pruning.plans import IterativePruning, RoundInfo
from sparsetune.pruning.scoring import exclude_pruned, global_top


class ToyConfig(MethodConfig):
    sparsity: float = Field(0.6, gt=0, lt=1)
    retrain_epochs: int = Field(1, ge=0)


class ToyPruning(PruningMethod):
    """Keeps the largest |w| over all layers together, once."""

    Config = ToyConfig
    key_params = ("sparsity",)
    search_space: ClassVar[str | None] = "toy_space.yaml"  # beside this module
    config: ToyConfig

    def plan(self) -> IterativePruning:
        return IterativePruning(1, (self.config.sparsity,), self.config.retrain_epochs)

    @torch.no_grad()
    def compute_masks(
        self, model: nn.Module, masks: MaskSet, round_info: RoundInfo
    ) -> dict[str, torch.Tensor]:
        magnitudes = {name: masks.effective_weight(name).abs() for name in masks}
        return global_top(exclude_pruned(magnitudes, masks), round_info.target_sparsity)
'''
TOY_SPACE = "sparsity: {low: 0.3, high: 0.9}\nretrain_epochs: 1\n"
DEFAULT_SPARSITY = 0.6


@pytest.fixture(scope="module")
def toy_path(tmp_path_factory) -> Path:
    """A folder holding the package `toy_pkg` as pip would install it."""
    site = tmp_path_factory.mktemp("site")
    package = site / "toy_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "toy.py").write_text(TOY_MODULE)
    (package / "toy_space.yaml").write_text(TOY_SPACE)
    metadata = site / "toy_pkg-0.1.dist-info"
    metadata.mkdir()
    (metadata / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-pkg\nVersion: 0.1\n")
    (metadata / "entry_points.txt").write_text(
        "[sparsetune.methods]\ntoy = toy_pkg.toy:ToyPruning\n"
    )
    return site


def with_toy(toy_path: Path) -> dict[str, str]:
    paths = [str(toy_path), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {"PYTHONPATH": os.pathsep.join(paths)}


def test_the_toy_is_registered_and_in_the_default_spaces(toy_path, tmp_path):
    code = (
        "from sparsetune.catalog import METHODS\n"
        "from sparsetune.search.space import default_space_path, load_space\n"
        "space = load_space(default_space_path('lenet300'))\n"
        "toy = space.methods['toy']\n"
        "print(METHODS.in_order()[-1], space.method_names[-1], toy['sparsity'].high)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**os.environ, **with_toy(toy_path)},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["toy", "toy", "0.9"]


def sparsity(compression: float) -> float:
    return 1 - 1 / compression


@pytest.mark.slow
def test_prune_runs_the_toy_with_its_config_defaults(toy_path, tmp_path):
    result = run_cli(
        "prune",
        *SYNTHETIC_RUN,
        *("--method", "toy", "--epochs", "1", "--json"),
        *("--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache")),
        cwd=tmp_path,
        env=with_toy(toy_path),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    # No recipe names the toy: it ran with its Config's defaults, one round.
    assert summary["method"] == "toy" and summary["round"] == 1
    assert summary["params"] == {"sparsity": DEFAULT_SPARSITY, "retrain_epochs": 1}
    assert sparsity(summary["compression"]) == pytest.approx(DEFAULT_SPARSITY, abs=1e-3)
    assert "round 1: val" in result.stderr


@pytest.mark.slow
def test_a_one_trial_sweep_searches_the_toy_from_its_fragment(toy_path, tmp_path):
    out = tmp_path / "sweep"
    result = run_cli(
        "search",
        *SYNTHETIC_RUN,
        *("--methods", "toy", "--trials", "1", "--epochs", "1", "--seed", "0"),
        *("--out", str(out), "--cache-dir", str(tmp_path / "cache")),
        *("--experiment", "toy"),
        cwd=tmp_path,
        env=with_toy(toy_path),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (row,) = sweep_rows(out)
    assert row["status"] == "ok" and row["method"] == "toy" and row["round"] == "1"
    params = json.loads(row["params"])
    assert 0.3 <= params["sparsity"] <= 0.9  # sampled from the toy's own fragment
    assert params["retrain_epochs"] == 1
    assert sparsity(float(row["compression"])) == pytest.approx(params["sparsity"], abs=1e-3)
    _, parents, children = sweep_runs(out, "toy")
    assert len(parents) == 1 and len(children) == 1
    assert children[0].data.tags["method"] == "toy"
