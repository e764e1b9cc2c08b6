"""The README's pictures: each one it shows is in the repository, a real PNG with something
drawn on it, and made by scripts/docs-images (from a real sweep and the Chromium UI test), so
that none is drawn by hand or goes stale without a way to make it again."""

from __future__ import annotations

import re
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def test_every_readme_image_exists_is_drawn_and_is_made_by_the_script():
    shown = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", (ROOT / "README.md").read_text())
    assert len(shown) >= 2  # the Pareto plot and the MLflow UI
    script = (ROOT / "scripts" / "docs-images").read_text()
    for relative in shown:
        path = ROOT / relative
        assert path.is_file(), f"README shows {relative}, which is missing"
        with Image.open(path) as image:
            assert image.format == "PNG" and image.width >= 600 and image.height >= 400
            colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colours is None or len(colours) > 50, f"{relative} looks blank"
        assert relative in script, f"scripts/docs-images does not make {relative}"
