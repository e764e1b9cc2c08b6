"""A damaged dense-cache entry is never used: it is trained again, with one warning line.

Each file of an entry has its size and sha256 in `meta.json` (written last); a reader checks the
bytes it decodes. The damage here is what a full disk, a killed copy or a flipped bit leaves:
a weight file cut short, bytes overwritten in place (same size), `meta.json` broken, a rewind
checkpoint gone. First on the cache alone, then end to end with a real dense training (synthetic
data, one epoch) through the trial driver and through `sparsetune prune`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
import torch
from cli_helpers import SYNTHETIC_RUN, run_cli
from safetensors.torch import load_file, save_file
from test_dense_cache import _train_in_process

from sparsetune.config import TrainConfig, TrialConfig
from sparsetune.identity import dense_key
from sparsetune.train.dense_cache import DenseCache, DenseCheckpoint
from sparsetune.trial import start_trial

LOGGER = "sparsetune.train.dense_cache"


def checkpoint(value: float) -> DenseCheckpoint:
    return DenseCheckpoint(
        init={"w": torch.full((64,), value), "b": torch.arange(4.0)},
        final={"w": torch.full((64,), value + 1), "b": torch.arange(4.0) * value},
        metrics={"val_acc": value / 10, "val_loss": 2.5},
        rewind={100: {"w": torch.full((64,), value + 0.5), "b": torch.zeros(4)}},
    )


def cut_short(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def overwrite_in_place(path: Path) -> None:
    # The last 8 bytes (tensor data, not the header), size kept: only a checksum can tell.
    with path.open("r+b") as handle:
        handle.seek(-8, 2)
        handle.write(b"\x00\x00\x80\x3f" * 2)  # 1.0 in float32, twice


def break_json(path: Path) -> None:
    path.write_text(path.read_text()[:40])


def edit_meta(path: Path, change, reseal: bool = False) -> None:
    """Edit meta.json; `reseal`: recompute its own sha256 (sha256 of the rest, written as
    `json.dumps(..., sort_keys=True)`), as a deliberate edit would."""
    meta = json.loads(path.read_text())
    change(meta)
    if reseal:
        body = {name: value for name, value in meta.items() if name != "sha256"}
        meta["sha256"] = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    path.write_text(json.dumps(meta, indent=2))


# kind -> (the file damaged, how, the reason the warning gives from its size before and after)
DAMAGE = {
    "weights cut short": (
        "final.safetensors",
        cut_short,
        lambda before, after: f"{after} bytes, {before} expected",
    ),
    "bytes overwritten in place": (
        "final.safetensors",
        overwrite_in_place,
        lambda before, after: "sha256 mismatch: bytes changed in place",
    ),
    "meta.json not JSON": ("meta.json", break_json, lambda before, after: "not valid JSON"),
    "rewind checkpoint missing": (
        "rewind-100.safetensors",
        Path.unlink,
        lambda before, after: "missing",
    ),
    "init emptied": (
        "init.safetensors",
        lambda path: path.write_bytes(b""),
        lambda before, after: f"0 bytes, {before} expected",
    ),
    "meta.json of another shape": (
        "meta.json",
        lambda path: path.write_text(json.dumps({"metrics": {"val_acc": 0.9}})),
        lambda before, after: "rewind_iterations: Field required",
    ),
    "meta.json nested 100,000 deep": (
        "meta.json",
        lambda path: path.write_text("[" * 100_000 + "]" * 100_000),
        lambda before, after: "not valid JSON",
    ),
    "a metric edited in meta.json": (
        "meta.json",
        lambda path: edit_meta(path, lambda meta: meta["metrics"].update(val_acc=0.99)),
        lambda before, after: "sha256 mismatch: bytes changed in place",
    ),
    "a checksum dropped, meta.json resealed": (
        "meta.json",
        lambda path: edit_meta(path, lambda meta: meta["files"].clear(), reseal=True),
        lambda before, after: "no checksum for init.safetensors",
    ),
}


def damage(entry: Path, kind: str) -> str:
    """Apply the damage `kind` to the entry; what the warning must say in its parentheses."""
    name, apply, reason = DAMAGE[kind]
    path = entry / name
    before = path.stat().st_size
    apply(path)
    after = path.stat().st_size if path.exists() else 0
    return f"{name}: {reason(before, after)}"


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


def assert_checksums_hold(entry: Path) -> None:
    meta = json.loads((entry / "meta.json").read_text())
    body = {name: value for name, value in meta.items() if name != "sha256"}
    assert hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest() == meta["sha256"]
    names = {"init.safetensors", "final.safetensors"}
    names |= {f"rewind-{j}.safetensors" for j in meta["rewind_iterations"]}
    assert set(meta["files"]) == names
    for name, record in meta["files"].items():
        data = (entry / name).read_bytes()
        assert len(data) == record["bytes"]
        assert hashlib.sha256(data).hexdigest() == record["sha256"]


def never_trains() -> DenseCheckpoint:
    raise AssertionError("a valid entry was trained again")


@pytest.mark.parametrize("kind", DAMAGE, ids=list(DAMAGE))
def test_a_damaged_entry_is_retrained_with_one_warning(tmp_path, caplog, kind):
    cache = DenseCache(tmp_path)
    cache.get_or_train("k", lambda: checkpoint(1.0))
    entry = cache.entry("k")
    what = damage(entry, kind)
    caplog.set_level(logging.WARNING, LOGGER)

    again = cache.get_or_train("k", lambda: checkpoint(2.0))

    assert again.trained_here
    assert warnings_of(caplog) == [f"dense cache entry k is damaged ({what}); retraining"]
    assert_checksums_hold(entry)
    # The new entry is whole: read back without training, without a warning, as trained.
    caplog.clear()
    read = DenseCache(tmp_path).get_or_train("k", never_trains)
    assert not read.trained_here and warnings_of(caplog) == []
    assert torch.equal(read.checkpoint.final["w"], torch.full((64,), 3.0))
    assert torch.equal(read.checkpoint.weights_at(100)["w"], torch.full((64,), 2.5))
    assert sorted(p.name for p in (tmp_path / "dense").iterdir()) == ["k", "k.lock"]


def test_an_entry_from_before_the_checksums_is_retrained(tmp_path, caplog):
    # What earlier versions wrote: weights and a meta.json without "files".
    entry = tmp_path / "dense" / "k"
    entry.mkdir(parents=True)
    save_file({"w": torch.zeros(3)}, entry / "init.safetensors")
    save_file({"w": torch.ones(3)}, entry / "final.safetensors")
    meta = {"metrics": {"val_acc": 0.5}, "rewind_iterations": [], "created": 0.0, "pid": 1}
    (entry / "meta.json").write_text(json.dumps(meta))
    caplog.set_level(logging.WARNING, LOGGER)
    cached = DenseCache(tmp_path).get_or_train("k", lambda: checkpoint(1.0))
    assert cached.trained_here
    assert warnings_of(caplog) == [
        "dense cache entry k is damaged (meta.json: files: Field required); retraining"
    ]
    assert_checksums_hold(entry)


def test_a_file_where_the_entry_belongs_is_replaced(tmp_path):
    cache = DenseCache(tmp_path)
    cache.entry("k").parent.mkdir(parents=True)
    cache.entry("k").write_bytes(b"not a folder")
    assert cache.get_or_train("k", lambda: checkpoint(1.0)).trained_here
    assert_checksums_hold(cache.entry("k"))
    assert sorted(p.name for p in (tmp_path / "dense").iterdir()) == ["k", "k.lock"]


def test_a_damaged_entry_is_warned_about_once_and_retrained_once(tmp_path, caplog):
    cache = DenseCache(tmp_path)
    cache.get_or_train("k", lambda: checkpoint(1.0))
    (cache.entry("k") / "meta.json").write_text("{")
    caplog.set_level(logging.WARNING, LOGGER)
    calls = []

    def train() -> DenseCheckpoint:
        calls.append(1)
        return checkpoint(1.0)

    for _ in range(3):
        cache.get_or_train("k", train)
    assert calls == [1] and len(warnings_of(caplog)) == 1


def test_concurrent_trials_retrain_a_damaged_entry_once(tmp_path):
    root = tmp_path / "cache"
    cache = DenseCache(root)
    cache.get_or_train("key", lambda: checkpoint(9.0))
    overwrite_in_place(cache.entry("key") / "final.safetensors")
    counter = tmp_path / "counter.txt"
    outputs = [str(tmp_path / f"out-{i}.safetensors") for i in range(3)]
    # Three processes at once (spawned: no state shared), each finding the damaged entry.
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(3, mp_context=spawn) as pool:
        values = [0.0, 1.0, 2.0]
        list(pool.map(_train_in_process, [str(root)] * 3, [str(counter)] * 3, values, outputs))
    assert len(counter.read_text().splitlines()) == 1, counter.read_text()
    infos = [json.loads(Path(out + ".json").read_text()) for out in outputs]
    assert sorted(info["trained_here"] for info in infos) == [False, False, True]
    tensors = [load_file(out) for out in outputs]
    assert all(torch.equal(other["final.w"], tensors[0]["final.w"]) for other in tensors[1:])
    assert_checksums_hold(cache.entry("key"))


# --- end to end: a real dense training ----------------------------------------------------------


@pytest.fixture(scope="module")
def dense_config(small_data) -> TrialConfig:
    # 1,000 training examples in batches of 8: 125 steps, so theta_100 is kept for rewinding.
    return TrialConfig(
        model="lenet300",
        data=small_data,
        train=TrainConfig(epochs=1, lr=0.05, batch_size=8),
        method="dense",
        seed=0,
        device="cpu",
    )


@pytest.fixture(scope="module")
def trained(dense_config, tmp_path_factory):
    """A cache holding the real dense stage, trained once for the module; each test damages
    its own copy."""
    cache = tmp_path_factory.mktemp("trained")
    dense = start_trial(dense_config, cache_dir=cache).dense
    assert dense.trained_here and 100 in dense.checkpoint.rewind
    return cache, dense


E2E_DAMAGE = [
    "weights cut short",
    "bytes overwritten in place",
    "meta.json not JSON",
    "rewind checkpoint missing",
]


@pytest.mark.parametrize("kind", E2E_DAMAGE)
def test_a_real_dense_stage_damaged_is_trained_again(tmp_path, caplog, dense_config, trained, kind):
    source, first = trained
    cache = tmp_path / "cache"
    shutil.copytree(source, cache)
    entry = DenseCache(cache).entry(first.key)
    what = damage(entry, kind)
    caplog.set_level(logging.WARNING, LOGGER)

    second = start_trial(dense_config, cache_dir=cache).dense

    assert second.trained_here and second.path == entry
    assert warnings_of(caplog) == [f"dense cache entry {first.key} is damaged ({what}); retraining"]
    assert first.key == dense_key(dense_config)
    assert_checksums_hold(entry)
    # Retrained under the same seed: the same weights as the first training, not the damaged ones.
    third = start_trial(dense_config, cache_dir=cache).dense
    assert not third.trained_here
    for part in ("init", "final"):
        expected, got = getattr(first.checkpoint, part), getattr(third.checkpoint, part)
        assert all(torch.equal(got[k], expected[k]) for k in expected)
    assert all(
        torch.equal(third.checkpoint.rewind[100][k], v)
        for k, v in first.checkpoint.rewind[100].items()
    )


@pytest.mark.slow
def test_prune_says_it_retrains_a_damaged_entry(tmp_path):
    arguments = ["prune", *SYNTHETIC_RUN, "--method", "dense", "--epochs", "1"]
    arguments += ["--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")]
    first = run_cli(*arguments, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    (entry,) = [path for path in (tmp_path / "cache" / "dense").iterdir() if path.is_dir()]
    overwrite_in_place(entry / "final.safetensors")

    second = run_cli(*arguments, cwd=tmp_path)

    assert second.returncode == 0, second.stderr[-3000:]
    assert "Traceback" not in second.stderr + second.stdout
    line = (
        f"dense cache entry {entry.name} is damaged (final.safetensors: sha256 mismatch: bytes "
        "changed in place); retraining"
    )
    assert line in second.stderr.splitlines(), second.stderr
    assert_checksums_hold(entry)
