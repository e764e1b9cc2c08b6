"""docs/your-model-your-data.md runs as written: its example's `bash` and `python` blocks, in the
page's order, in an empty folder, with the real `sparsetune` command, torchvision's ResNet-18 and
an image folder the page's first block writes from the real Fashion-MNIST files. And
docs/api.md names every keyword of `sparsetune.search` and `sparsetune.prune` (the fields of
their option models) and every field of what they return, and no keyword the code lacks."""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import sweep_rows, sweep_runs
from image_folders import FASHION_MNIST_GZ

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGE = DOCS / "your-model-your-data.md"
SECTION = "## The example, step by step"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
# ResNet-18 as torchvision builds it for the example's four classes.
RESNET18_PARAMETERS = 11_178_564


def example_blocks() -> list[tuple[str, str]]:
    """(language, code) of every fenced block of the page's example section, in order."""
    text = PAGE.read_text()
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    section = text[start : end if end != -1 else len(text)]
    return [(language, code) for language, code in FENCE.findall(section)]


def test_the_example_covers_each_step():
    blocks = example_blocks()
    assert [language for language, _ in blocks] == ["python"] + ["bash"] * 5 + ["python"]
    shell = "\n".join(code for language, code in blocks if language == "bash")
    for command in ("space", "prune", "search", "report", "export"):
        assert f"sparsetune {command} " in shell
    assert "--format structured" in shell and "torchvision:resnet18" in shell
    assert "sparsetune.load(" in blocks[-1][1] and "sparsetune.search(" in blocks[-1][1]


# The keywords that differ from their option field's name.
KEYWORD = {"dataset": "data"}


def api_table_keywords(heading: str) -> set[str]:
    """The keywords the first table under `heading` in docs/api.md lists (`name=`)."""
    text = (DOCS / "api.md").read_text()
    table = text[text.index(heading) :].split("\n\n|", 1)[1].split("\n\n", 1)[0]
    return set(re.findall(r"^\| `(\w+)=`", "|" + table, re.MULTILINE))


@pytest.mark.parametrize(
    ("heading", "options", "own"),
    [
        ("## `sparsetune.search`", "sparsetune.search.options:SweepConfig", {"quiet"}),
        ("## `sparsetune.prune`", "sparsetune.app.options:PruneOptions", {"quiet"}),
    ],
)
def test_the_api_reference_lists_every_keyword(heading, options, own):
    from importlib import import_module

    module, name = options.split(":")
    fields = getattr(import_module(module), name).model_fields
    assert api_table_keywords(heading) == {KEYWORD.get(field, field) for field in fields} | own


def test_the_api_reference_lists_every_returned_field():
    from dataclasses import fields

    from sparsetune.app.api import FrontPoint, SearchRun
    from sparsetune.app.prune import PruneResult
    from sparsetune.results import ROUND_METRICS

    text = (DOCS / "api.md").read_text()
    for result in (FrontPoint, SearchRun, PruneResult):
        section = text[text.index(f"### `{result.__name__}`") :].split("\n## ", 1)[0]
        section = section.split("\n### ", 1)[0]
        listed = set(re.findall(r"^\| `(\w+)`", section, re.MULTILINE))
        assert {field.name for field in fields(result)} <= listed, result.__name__
    round_result = text[text.index("`RoundResult` (") :].split("\n\n", 1)[0]
    for name in ROUND_METRICS:
        assert f"`{name}`" in round_result


def run_block(language: str, code: str, folder: Path, env: dict[str, str]):
    command = ["bash", "-euo", "pipefail", "-c", code] if language == "bash" else [sys.executable]
    return subprocess.run(
        command,
        input=code if language == "python" else None,
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def fashion_mnist_raw(folder: Path) -> None:
    """Debian's Fashion-MNIST files where torchvision's FashionMNIST looks for them, so the
    page's first block finds them and downloads nothing."""
    raw = folder / "data" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for packed in FASHION_MNIST_GZ.glob("*-ubyte.gz"):
        (raw / packed.stem).write_bytes(gzip.decompress(packed.read_bytes()))


@pytest.mark.slow
def test_the_example_runs_as_written(tmp_path):
    fashion_mnist_raw(tmp_path)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "SPARSETUNE_OFFLINE": "1",
        "SPARSETUNE_CACHE_DIR": str(tmp_path / "cache"),  # not the user's dense cache
    }
    outputs = []
    for language, code in example_blocks():
        result = run_block(language, code, tmp_path, env)
        assert result.returncode == 0, f"{code}\n{result.stderr[-3000:]}"
        outputs.append(result)

    # 1. The image folder: 4 classes, 100 training and 25 test images each.
    for part, count in (("train", 100), ("test", 25)):
        classes = sorted(p.name for p in (tmp_path / "images" / part).iterdir())
        assert classes == ["Dress", "Pullover", "T-shirt-top", "Trouser"]
        for name in classes:
            assert len(list((tmp_path / "images" / part / name).glob("*.png"))) == count

    # 2. The generated space: the two methods asked for, sensitivity left out for BatchNorm.
    space = (tmp_path / "space.yaml").read_text()
    assert "  magnitude:" in space and "  snip:" in space and "  lottery:" not in space
    assert "input 3x32x32, 4 classes" in space

    # 3. One configuration: 98% of the weights gone, its ticket and result written.
    result = json.loads((tmp_path / "runs" / "prune" / "result.json").read_text())
    assert result["model"] == "torchvision:resnet18" and result["compression"] > 40
    # docs/api.md names every key of `PruneResult.summary()`, which result.json holds.
    api = (DOCS / "api.md").read_text()
    summary = api[api.index("| `summary()` |") :].split("\n", 1)[0]
    assert set(result) <= set(re.findall(r"`(\w+)`", summary))
    assert (tmp_path / "runs" / "prune" / "round-1.safetensors").is_file()

    # 4. The sweep: two trials recorded as MLflow children of one parent, and a front.
    sweep = tmp_path / "runs" / "sweep"
    assert len({row["trial_id"] for row in sweep_rows(sweep)}) == 2
    _, parents, children = sweep_runs(sweep, "resnet18-images")
    assert len(parents) == 1 and len(children) == 2
    front = json.loads((sweep / "pareto.json").read_text())["front"]
    assert front

    # 5. The review's files.
    for name in ("pareto.png", "pareto.html", "front.csv"):
        assert (sweep / name).stat().st_size > 0

    # 6-7. The smaller network loads, is smaller, and scores on the test images what sparsetune
    # measured for the pruned network it came from.
    assert (tmp_path / "resnet18-small.safetensors").is_file()
    printed = outputs[-1].stdout
    parameters = int(re.search(r"^([\d,]+) parameters$", printed, re.M)[1].replace(",", ""))
    assert parameters < RESNET18_PARAMETERS
    accuracy = re.search(r"test accuracy (\S+) \(sparsetune measured (\S+)\)", printed)
    assert accuracy[1] == accuracy[2] == f"{result['test_acc']:.4f}"
    # The Python API returned the sweep's recorded front, one table row per point.
    assert printed.splitlines()[-1].startswith(f"{len(front) - 1} ")
