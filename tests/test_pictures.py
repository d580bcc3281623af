"""--export-svg pictures are self-contained (nothing fetched from the network, no web font) and keep
their spaces, so right-aligned numbers line up in any renderer, offline (rsvg collapsed them before);
the README's picture is what `attncli demo --export-svg` makes now."""

from __future__ import annotations

import re
from xml.etree import ElementTree

from conftest import ROOT, SAMPLES
from typer.testing import CliRunner

from attncli.cli import app

SVG = "{http://www.w3.org/2000/svg}"
XML_SPACE = "{http://www.w3.org/XML/1998/namespace}space"
README_PICTURE = ROOT / "docs" / "demo.svg"
README_WIDTH = 100  # COLUMNS=100 attncli demo --export-svg docs/demo.svg


def export(tmp_path, *args: str, columns: int = 80) -> str:
    path = tmp_path / "picture.svg"
    # in colour, as a user makes them (the tests' NO_COLOR would change the heatmap's legend)
    result = CliRunner(env={"COLUMNS": str(columns), "NO_COLOR": None}).invoke(app, [*args, "--export-svg", str(path)])
    assert result.exit_code == 0, result.output
    return path.read_text(encoding="utf-8")


def assert_self_contained(svg: str) -> None:
    # the only address left is the SVG namespace, which names the format and is never fetched
    addresses = re.findall(r"https?://[^\s\"')]*", svg)
    assert set(addresses) <= {"http://www.w3.org/2000/svg"}, addresses
    assert "@import" not in svg and "@font-face" not in svg
    assert all(reference.startswith("url(#") for reference in re.findall(r"url\([^)]*\)", svg))  # own clip paths
    root = ElementTree.fromstring(svg)
    assert root.get(XML_SPACE) == "preserve"
    assert "white-space: pre" in svg and "monospace" in svg


def texts(svg: str) -> list[tuple[float, float, float, str]]:
    """Every text run of the terminal: x, y, its width in cells, and its text (spaces as spaces)."""
    root = ElementTree.fromstring(svg)
    runs = []
    for element in root.iter(f"{SVG}text"):
        if element.get("textLength") is None:
            continue  # the window title
        text = (element.text or "").replace("\xa0", " ")
        runs.append((float(element.get("x")), float(element.get("y")), float(element.get("textLength")), text))
    return runs


def test_an_exported_svg_is_self_contained_and_keeps_its_spaces(tmp_path):
    for args in (["demo"], ["compute", str(SAMPLES / "classic.json"), "-s", "softmax"]):
        assert_self_contained(export(tmp_path, *args))


def test_right_aligned_numbers_end_in_the_same_column(tmp_path):
    runs = texts(export(tmp_path, "compute", str(SAMPLES / "classic.json"), "-s", "softmax"))
    column = [run for run in runs if run[3].strip() in ("0.0634", "6.034e-06", "0.0003")]
    assert len(column) == 3
    assert len({round(x + width, 3) for x, _, width, _ in column}) == 1  # one right edge
    assert len({x for x, *_ in column}) == 1  # each run starts at the cell, its leading spaces kept
    assert all(text.startswith(" ") for *_, text in column if text.strip() != "6.034e-06")


def test_the_readme_picture_is_what_the_demo_exports_now(tmp_path):
    picture = README_PICTURE.read_text(encoding="utf-8")
    assert_self_contained(picture)
    # The text and where it stands; colours may follow the heatmap's palette.
    assert texts(picture) == texts(export(tmp_path, "demo", columns=README_WIDTH)), (
        f"docs/demo.svg is stale: COLUMNS={README_WIDTH} attncli demo --export-svg docs/demo.svg")
