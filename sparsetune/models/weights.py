"""`--weights FILE`: a model the user already trained, as the dense stage.

The file is a safetensors file, or a torch checkpoint read with `torch.load(weights_only=True)`
(no code in it runs): a state dict, or a dict holding one under `state_dict`. Its keys must be
those of the model's own `state_dict()`, each with the model's shape.

Under `--weights` the dense stage is not trained: its final weights are the file's. Methods that
need an initialisation get theta_0 = a fresh initialisation of the architecture under the trial's
seed (the one a dense training would have started from), since the file does not say which
initialisation its weights were trained from. `INITIALISATION_NOTE` says so, per method.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

# What each method starts from under --weights (printed by `prune` and `search`, and in the docs).
INITIALISATION_NOTE = {
    "lottery": "rewinds the survivors to theta_0, a fresh seeded initialisation of the "
    "architecture, not the one your weights were trained from (no theta_j exists for j > 0: "
    "prune refuses rewind_iteration > 0, a search fixes it at 0)",
    "snip": "scores and trains a fresh seeded initialisation theta_0; your weights are only the "
    "dense baseline it is compared with",
    "grasp": "scores and trains a fresh seeded initialisation theta_0; your weights are only the "
    "dense baseline it is compared with",
    "random": "prunes and trains a fresh seeded initialisation theta_0; your weights are only the "
    "dense baseline it is compared with",
    "l0": "with start: init (the default) trains a fresh seeded initialisation theta_0; with "
    "start: dense it starts from your weights",
}


def initialisation_note(method: str) -> str:
    """One sentence: what `method` starts from under --weights."""
    return INITIALISATION_NOTE.get(method, "starts from your weights")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The state dict in `path`; one-line ValueError when it is not one."""
    if not path.is_file():
        raise ValueError("no such file; pass a .safetensors file or a torch checkpoint (.pt)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(path, device="cpu")
        except Exception as error:
            raise ValueError(f"not a readable safetensors file ({error})") from None
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        problem = (str(error).strip().splitlines() or [""])[0]
        raise ValueError(
            f"not a weights-only torch checkpoint ({type(error).__name__}: {problem}); save it "
            "with torch.save(model.state_dict(), FILE) or as .safetensors"
        ) from None
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict) or not all(
        isinstance(value, torch.Tensor) for value in loaded.values()
    ):
        raise ValueError(
            "holds no state dict (a dict of tensors, or one under 'state_dict'); save it with "
            "torch.save(model.state_dict(), FILE)"
        )
    return loaded


def _listed(keys: list[str], most: int = 4) -> str:
    shown = ", ".join(keys[:most])
    return shown + (f" (+{len(keys) - most} more)" if len(keys) > most else "")


def load_weights(model: nn.Module, path: Path) -> None:
    """Load the file's weights into `model`; one-line ValueError naming the keys that do not fit."""
    state = read_state_dict(path)
    own = model.state_dict()
    missing = [key for key in own if key not in state]
    unexpected = [key for key in state if key not in own]
    problems = []
    if missing:
        problems.append(f"missing {_listed(missing)}")
    if unexpected:
        problems.append(f"unexpected {_listed(unexpected)}")
    if not problems:
        wrong = [
            f"{key} {tuple(state[key].shape)} (the model's: {tuple(own[key].shape)})"
            for key in own
            if state[key].shape != own[key].shape
        ]
        if wrong:
            problems.append(f"other shapes: {_listed(wrong, 2)}")
    if problems:
        raise ValueError(
            f"its keys do not fit the model: {'; '.join(problems)}; save the state_dict() of "
            "this same model (same --model, same data shape and classes)"
        )
    model.load_state_dict(state)
