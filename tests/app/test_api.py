"""The Python API: `sparsetune.prune` and `sparsetune.search` called as a script would, on the
same application code as the CLI, with keyword arguments for the flags."""

from __future__ import annotations

import json

import pytest
from cli_helpers import SMALL_SPACE, sweep_runs
from python_script import script_json

import sparsetune
from sparsetune.app.errors import BadInput

pytestmark = pytest.mark.slow

SEARCH_SCRIPT = """
import json, sys
import sparsetune

run = sparsetune.search(
    "lenet300", data="synthetic", trials=2, space=sys.argv[1], out=sys.argv[2],
    cache_dir=sys.argv[3], experiment="api", val_size=500, max_concurrent=2, seed=0, quiet=True,
)
frame = run.to_pandas()
print(json.dumps({
    "front": run.records(),
    "hypervolume": run.hypervolume,
    "sweep_dir": str(run.sweep_dir),
    "parent_run_id": run.parent_run_id,
    "columns": list(frame.columns),
    "rows": len(frame),
}, default=str))
"""


def test_prune_from_python_returns_the_rounds_and_writes_the_run_folder(tmp_path):
    out = tmp_path / "run"
    result = sparsetune.prune(
        "lenet300",
        data="synthetic",
        method="magnitude",
        params={"rounds": 2},
        epochs=1,
        val_size=500,
        out=out,
        cache_dir=tmp_path / "cache",
        quiet=True,
    )
    assert [r.round for r in result.rounds] == [1, 2]
    assert result.final.compression > 1
    summary = json.loads((out / "result.json").read_text())
    assert summary["method"] == "magnitude" and summary["params"]["rounds"] == 2
    assert summary["compression"] == pytest.approx(result.final.compression)
    assert (out / "round-2.safetensors").is_file()


def test_a_bad_keyword_is_one_line_and_writes_nothing(tmp_path):
    with pytest.raises(BadInput) as caught:
        sparsetune.prune("lenet300", data="synthetic", epochz=1, out=tmp_path / "run")
    assert str(caught.value).startswith("epochz: unknown key; allowed keys: ")
    with pytest.raises(BadInput, match="method magnitude: params.no_such_knob: unknown key"):
        sparsetune.prune(
            "lenet300", data="synthetic", params={"no_such_knob": 1}, out=tmp_path / "run"
        )
    with pytest.raises(BadInput, match=r"^space: give a path, as a str or pathlib.Path \(got \{"):
        sparsetune.search("lenet300", data="synthetic", space={"methods": {}}, out=tmp_path / "s")
    assert list(tmp_path.iterdir()) == []


def test_search_from_a_script_returns_the_front_with_tickets_and_runs(tmp_path):
    (tmp_path / "space.yaml").write_text(SMALL_SPACE)
    out = tmp_path / "sweep"
    arguments = [str(tmp_path / "space.yaml"), str(out), str(tmp_path / "cache")]
    found = script_json(SEARCH_SCRIPT, *arguments, cwd=tmp_path)

    assert found["sweep_dir"] == str(out.resolve())
    assert found["front"] and found["rows"] == len(found["front"])
    assert found["hypervolume"] > 0
    assert {"val_acc", "compression", "method", "ticket", "run_id"} <= set(found["columns"])
    client, parents, children = sweep_runs(out, "api")
    assert [p.info.run_id for p in parents] == [found["parent_run_id"]]
    child_ids = {c.info.run_id for c in children}
    assert len(child_ids) == 2
    for point in found["front"]:
        assert point["run_id"] in child_ids
        assert (out / "trials" / point["trial_id"]).is_dir()
        if point["method"] != "dense":
            assert point["ticket"].endswith(f"round-{point['round']}.safetensors")
            assert sparsetune.load(point["ticket"]) is not None

    # The same call again: the sweep has finished, so its recorded front comes back.
    recorded = script_json(SEARCH_SCRIPT, *arguments, cwd=tmp_path)
    assert [(p["trial_id"], p["round"]) for p in recorded["front"]] == [
        (p["trial_id"], p["round"]) for p in found["front"]
    ]
    assert recorded["hypervolume"] == pytest.approx(found["hypervolume"])

    # Other options on the finished folder: refused, not answered with another sweep's front.
    with pytest.raises(BadInput, match=r"holds a finished sweep whose --trials differ"):
        sparsetune.search(
            "lenet300",
            data="synthetic",
            trials=3,
            space=arguments[0],
            out=out,
            cache_dir=arguments[2],
            experiment="api",
            val_size=500,
            max_concurrent=2,
            seed=0,
            quiet=True,
        )
