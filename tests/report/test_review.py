"""The review written into a sweep folder (no Ray, no MLflow): the Pareto plot as PNG and HTML,
the front as CSV, and `sparsetune report` printing it."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
from cli_helpers import run_cli
from PIL import Image
from review_helpers import POINTS, make_sweep, run_id

from sparsetune.report.plots import method_colour, pareto_figure, round_curves_png
from sparsetune.report.published import published_points
from sparsetune.report.review import REVIEW_FILES, NotASweep, load_sweep, write_review


def _distinct_colours(path) -> int:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return len(image.convert("RGB").getcolors(maxcolors=1 << 20) or [])


def test_write_review_writes_the_plot_and_the_front_table(sweep_dir):
    written = write_review(sweep_dir)
    assert [p.name for p in written] == list(REVIEW_FILES)
    assert all(p.parent == sweep_dir for p in written)
    assert (sweep_dir / "pareto.json").is_file()  # kept as it was
    assert not list(sweep_dir.glob(".*tmp*"))  # no staging file left behind

    assert _distinct_colours(sweep_dir / "pareto.png") > 20

    with (sweep_dir / "front.csv").open() as handle:
        front = list(csv.DictReader(handle))
    assert [float(r["compression"]) for r in front] == [1.0, 4.0, 11.5, 30.0, 50.0]
    assert {r["method"] for r in front} == {"dense", "magnitude", "sensitivity", "snip"}
    assert front[1]["run_id"] == run_id("t1")
    assert json.loads(front[1]["key_params"]) == {"c_fc": 1.2, "criterion": "std"}


def test_the_figure_draws_every_point_the_front_and_the_matching_papers_points(sweep_dir):
    results = load_sweep(sweep_dir)
    assert len(results.rows) == len(POINTS)  # the failed trial has no point
    published = results.published()
    assert published == published_points("lenet300", "mnist") and published
    figure = pareto_figure(results.rows, results.front, published)
    axes = figure.axes[0]
    by_gid = {c.get_gid(): c for c in axes.collections}
    assert by_gid["front"].get_offsets().shape == (5, 2)
    stars = by_gid["published"].get_offsets()
    assert sorted(map(tuple, stars.tolist())) == sorted(
        (p.compression, 100 - p.test_error) for p in published
    )
    assert {g for g in by_gid if g.startswith("rows:")} == {
        f"rows:{m}" for m in ("dense", "magnitude", "sensitivity", "snip", "l0")
    }
    assert axes.get_xscale() == "log"
    assert "test accuracy" in axes.get_ylabel()
    assert [line.get_gid() for line in axes.lines] == ["front-line"]
    # Published stars take their method's colour, the same as the sweep's own points.
    magnitude = by_gid["rows:magnitude"].get_facecolor()[0][:3]
    assert tuple(round(255 * c) for c in magnitude) == tuple(
        int(method_colour("magnitude")[i : i + 2], 16) for i in (1, 3, 5)
    )


def test_no_papers_points_for_another_dataset(tmp_path):
    folder = make_sweep(tmp_path / "fashion", dataset="fashion-mnist")
    results = load_sweep(folder)
    assert results.published() == []
    figure = pareto_figure(results.rows, results.front, results.published())
    assert "published" not in {c.get_gid() for c in figure.axes[0].collections}
    write_review(folder)
    page = (folder / "pareto.html").read_text()
    assert "No published points for lenet300 on fashion-mnist" in page
    assert "Han et al." not in page


def test_the_html_page_is_self_contained_and_carries_the_details(sweep_dir):
    write_review(sweep_dir)
    page = (sweep_dir / "pareto.html").read_text()
    assert "http" not in page  # no CDN, no network: it must work in MLflow's sandboxed frame
    assert "<svg" in page and "<script>" in page and " src=" not in page
    for method in ("dense", "magnitude", "sensitivity", "snip", "l0"):
        assert f'data-toggle="m:{method}"' in page  # a legend entry that toggles the method
    for trial in ("t0", "t1", "t3", "t4"):
        assert run_id(trial) in page
    assert page.count('class="pt front"') == 5
    assert "Han et al. 2015" in page and "Tartaglione et al. 2018" in page
    assert page.count('class="pt published"') == len(published_points("lenet300", "mnist"))
    assert "Hypervolume 1.2345" in page
    # Hover text: method, accuracies, compression, round, run id, hyperparameters.
    assert "&quot;hyperparameters&quot;: &quot;criterion=std c_fc=1.2&quot;" in page


def test_round_curves_png(tmp_path):
    rounds = [
        {"round": r, "val_acc": 0.98 - r / 100, "test_acc": 0.97 - r / 100, "compression": 2.0**r}
        for r in range(4)
    ]
    path = round_curves_png(rounds, tmp_path / "curves.png", title="magnitude-abc")
    assert path.is_file() and _distinct_colours(path) > 10


def test_method_colours_are_fixed_by_the_registry():
    assert method_colour("magnitude") == method_colour("magnitude")
    colours = {method_colour(m) for m in ("dense", "magnitude", "l0", "sensitivity", "snip")}
    assert len(colours) == 5
    assert method_colour("pkg.module:Mine").startswith("#")  # a name outside the registry too


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (None, "not a folder"),
        ({}, "no pareto.json"),
        ({"pareto.json": '{"front": []}'}, "no trials.csv"),
        ({"pareto.json": "{", "trials.csv": ""}, "not readable JSON"),
        ({"pareto.json": "[]", "trials.csv": ""}, "no 'front' list"),
    ],
    ids=["missing", "empty", "no-trials", "bad-json", "no-front"],
)
def test_not_a_sweep_folder(tmp_path, files, expected):
    folder = tmp_path / "nope"
    if files is not None:
        folder.mkdir()
        for name, text in files.items():
            (folder / name).write_text(text)
    with pytest.raises(NotASweep, match=expected):
        write_review(folder)
    if folder.is_dir():
        assert sorted(p.name for p in folder.iterdir()) == sorted(files)  # nothing written


def test_report_prints_the_front_and_writes_the_files(sweep_dir):
    result = run_cli("report", str(sweep_dir), cwd=sweep_dir.parent)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Pareto front: review-test" in out
    assert "hypervolume 1.2345" in out
    assert run_id("t3")[:8] in out and "sensitivity" in out
    assert "published points drawn for lenet300 on mnist" in out
    for name in REVIEW_FILES:
        assert (sweep_dir / name).is_file() and name in out


def test_report_on_a_folder_without_results_is_one_line_and_writes_nothing(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    result = run_cli("report", str(folder), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith("sparsetune: error:") and "no pareto.json" in result.stderr
    assert list(folder.iterdir()) == []


def test_review_and_ui_modules_import_no_mlflow_torch_or_ray():
    code = (
        "import sys, sparsetune.report.review, sparsetune.tracking.ui\n"
        "print(sorted(m for m in ('torch', 'ray', 'optuna', 'mlflow') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
