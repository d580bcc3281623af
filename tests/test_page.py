"""The page (--export-html): one self-contained HTML file, tested as text here and in a real browser
(headless Chromium, from file://, with every host name unresolvable) when one is installed."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, SAMPLES
from test_cli import run

from attncli.generate import random_document
from attncli.pipeline import attention
from attncli.problem import problem_from_document
from attncli.view.page import trace_page

HOSTILE = ["<script>alert(1)</script>", 'say "hi" & <b>', "</script><p>", "tab\there"]


def make_page(tmp_path: Path, *args: object, name: str = "page.html") -> str:
    path = tmp_path / name
    result = run(*args, "--export-html", path)
    assert result.exit_code == 0, result.output
    return path.read_text(encoding="utf-8")


def page_data(page: str) -> dict:
    found = re.search(r'<script type="application/json" id="page-data">(.*?)</script>', page, re.S)
    assert found is not None
    return json.loads(found.group(1))


# --- the page as text ------------------------------------------------------------------------------

def test_the_page_is_self_contained_and_escapes_every_token(tmp_path):
    document = random_document(seq_len=4, d_model=4, heads=2, seed=3)
    document["tokens"] = HOSTILE
    (tmp_path / "hostile.json").write_text(json.dumps(document))
    page = make_page(tmp_path, "compute", tmp_path / "hostile.json")
    assert page.startswith("<!DOCTYPE html>")
    # nothing fetched: no address in a src or href, no stylesheet link, no external script
    assert re.findall(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", page, re.I) == []
    assert "<link" not in page.lower() and not re.search(r"<script[^>]+src", page, re.I)
    assert "@import" not in page and "url(" not in page and "http://" not in page and "https://" not in page
    # every token escaped: the only scripts are the page's own two, and the data holds no "<"
    assert page.count("<script") == 2 and page.count("</script>") == 2
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "say &quot;hi&quot; &amp; &lt;b&gt;" in page
    assert "tab\\there" in page  # a tab shown escaped, as the terminal shows it
    data = re.search(r'id="page-data">(.*?)</script>', page, re.S).group(1)
    assert "<" not in data
    heading = page_data(page)["rows"]["0,1,0"]["s"][0][0]
    assert heading == "Query 0 “<script>alert(1)</scrip…” (head 1): its query vector and the key vectors"


def test_the_page_holds_every_step_and_the_classic_numbers(tmp_path):
    result = run("compute", SAMPLES / "classic.json", "--export-html", tmp_path / "page.html")
    assert result.exit_code == 0
    assert "1.9366" in result.stdout  # the tables are shown on the terminal as before
    page = (tmp_path / "page.html").read_text(encoding="utf-8")
    steps = re.findall(r'<section class="step" id="step-(\w+)">', page)
    assert steps == ["x", "q", "k", "v", "scores", "softmax", "output"]
    flow = re.findall(r'<tr><th scope="row"><a href="#step-(\w+)">', page)
    assert flow == steps
    output = page[page.index('data-step="output"'):]
    assert re.findall(r"<td>([\d.]+)</td>", output)[:3] == ["1.9366", "6.6831", "1.5951"]
    softmax = page[page.index('data-step="softmax"'):page.index('data-step="output"')]
    assert re.findall(r'data-e="0,0,0,(\d)" style="background:(#[0-9a-f]{6});color:(\w+)">([\d.]+)<', softmax) == [
        ("0", "#461768", "white", "0.0634"), ("1", "#24888c", "white", "0.4683"),
        ("2", "#24888c", "white", "0.4683")]
    cell = page_data(page)["rows"]["0,0,0"]
    sections = [cell["s"][index] for index in cell["c"]["1"]]
    assert [heading for heading, _ in sections] == [
        "Query 0: its query vector and the key vectors", "Scores: the dot product of the query with each key",
        "Softmax over the keys", "Output: the weighted sum of the value rows",
        "Key 1: its weight and its part of out[0]"]
    assert sections[1][1] == ["q[0]·k[1] = 1×4 + 0×4 + 2×0 = 4"]
    assert sections[4][1] == ["e^(4 - 4) = 1", "weight[1] = 1 / 2.1353 = 0.4683",
                              "weight[1]×v[1] = 0.4683×[2, 8, 0] = [0.9366, 3.7465, 0]",
                              "out[0] = [1.9366, 6.6831, 1.5951]: the sum of every key's part"]


def test_every_head_has_its_tables_a_selector_and_tokens_on_both_axes(tmp_path):
    page = make_page(tmp_path, "compute", SAMPLES / "multihead_causal.json")
    assert re.findall(r'<option value="([\d,]+)">([^<]+)</option>', page) == [("0,0", "head 0"), ("0,1", "head 1")]
    softmax = page[page.index('id="step-softmax"'):page.index('id="step-concat"')]
    assert softmax.count('<figure class="matrix" data-head="1">') == 1
    assert '<th scope="col">2 <span class="tok" title="a">a</span></th>' in softmax
    assert '<th scope="row">3 <span class="tok" title="cat">cat</span></th>' in softmax
    assert '<th scope="col" class="corner">query ╲ key</th>' in softmax
    assert softmax.count('class="masked">·</td>') == 2 * 6  # causal: 6 masked keys a head
    logits = page[page.index('id="step-logits"'):page.index('id="step-softmax"')]
    assert logits.count('class="masked">−∞</td>') == 2 * 6
    assert "masked" in page_data(page)["rows"]["0,1,0"]["s"][-1][1][0]


def test_a_large_problem_is_elided_as_the_terminal_elides_it_and_names_the_elided_region(tmp_path):
    problem = problem_from_document(random_document(seq_len=30, d_model=4, heads=1, seed=1))
    trace = attention(problem, None)
    page = trace_page(problem, trace, trace.select(["softmax"]))
    softmax = page[page.index('id="step-softmax"'):]
    assert "queries 10 to 19 and keys 7 to 22 elided: --full shows every value" in softmax
    assert softmax.count('<tr class="gap">') == 1 and '<th scope="col" class="gap" title="keys 7 to 22">' in softmax
    rows = page_data(page)["rows"]
    assert len(rows) == 20 and sorted(map(int, rows["0,0,29"]["c"])) == [*range(7), *range(23, 30)]
    full = trace_page(problem, trace, trace.select(["softmax"]), full=True)
    assert "elided" not in full[full.index('id="step-softmax"'):] and len(page_data(full)["rows"]) == 30


def test_a_cell_reads_as_the_terminal_writes_it(tmp_path):
    # 0.1 + 0.2 - 0.3 is 5.55e-17 in float64: rounding left-over, which both write 0
    problem = tmp_path / "left_over.json"
    problem.write_text(json.dumps({"x": [[0.1, 0.2, -0.3], [1, 2, 3]], "w_query": [[1], [1], [1]],
                                   "w_key": [[1], [1], [1]], "w_value": [[1], [1], [1]]}))
    terminal = run("compute", problem, "-s", "q").output
    assert "│         0 │ 0.0000 │" in terminal and "│         1 │ 6.0000 │" in terminal
    page = make_page(tmp_path, "compute", problem, "-s", "q")
    shown = page[page.index('data-step="q"'):page.index("</table>", page.index('data-step="q"'))]
    assert re.findall(r"<td>([^<]*)</td>", shown) == ["0.0000", "6.0000"]


def test_demo_makes_the_page_too_and_the_svg_stays_the_terminal_picture(tmp_path):
    result = run("demo", "--export-html", tmp_path / "demo.html", "--export-svg", tmp_path / "demo.svg")
    assert result.exit_code == 0
    page = (tmp_path / "demo.html").read_text(encoding="utf-8")
    assert "<title>attncli demo: the classic example</title>" in page and 'data-e="0,0,2,1"' in page
    assert "Beware" in (tmp_path / "demo.svg").read_text()  # the walk-through's words, as recorded
    page = make_page(tmp_path, "demo", SAMPLES / "gqa_rope.json", name="gqa.html")
    assert '<figure class="matrix" data-kv-head="1">' in page and '<figure class="matrix" data-head="3">' in page
    assert page_data(page)["group"] == 2


# --- in a real browser -------------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
browser = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install chromium)")


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """Headless Chromium with its own profile, every host name unresolvable (no network), logging
    the page's console to stderr."""
    command = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-extensions", "--disable-background-networking", "--host-resolver-rules=MAP * ~NOTFOUND",
               f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def dump_dom(tmp_path: Path, page: Path, fragment: str = "") -> str:
    done = chromium(tmp_path, "--dump-dom", page.as_uri() + fragment)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Uncaught" not in done.stderr, done.stderr
    return done.stdout


def assert_ran_cleanly(dom: str) -> None:
    body = re.search(r"<body[^>]*>", dom).group(0)
    assert 'data-ready="yes"' in body and "data-errors" not in body
    assert '<pre id="page-errors" role="alert" hidden=""></pre>' in dom


def shown_lines(dom: str) -> list[str]:
    body = dom[dom.index('<div id="arithmetic-body"'):dom.index("</aside>")]
    return re.findall(r'<p class="arith-line[^"]*">([^<]*)</p>', body)


@browser
def test_in_a_browser_the_page_runs_and_a_cell_reveals_its_arithmetic(tmp_path):
    make_page(tmp_path, "compute", SAMPLES / "classic.json")
    dom = dump_dom(tmp_path, tmp_path / "page.html", "#explain=0,1")
    assert_ran_cleanly(dom)
    output = dom[dom.index('data-step="output"'):]
    assert re.findall(r"<td>([\d.]+)</td>", output)[:3] == ["1.9366", "6.6831", "1.5951"]
    assert '<div id="arithmetic-body" data-shown="0,0,0,1">' in dom
    assert 'class="chosen" aria-pressed="true">0.4683</td>' in dom
    lines = shown_lines(dom)
    assert lines[:2] == ["q[0] = [1, 0, 2]", "k[1] = [4, 4, 0]"]
    assert "q[0]·k[1] = 1×4 + 0×4 + 2×0 = 4" in lines and "sum = 0.1353 + 1 + 1 = 2.1353" in lines
    assert lines[-3:] == ["weight[1] = 1 / 2.1353 = 0.4683", "weight[1]×v[1] = 0.4683×[2, 8, 0] = [0.9366, 3.7465, 0]",
                          "out[0] = [1.9366, 6.6831, 1.5951]: the sum of every key's part"]
    assert '<p class="arith-line this-key">weight[1] = 1 / 2.1353 = 0.4683</p>' in dom


@browser
def test_in_a_browser_the_head_selector_shows_one_head_and_errors_are_reported(tmp_path):
    make_page(tmp_path, "compute", SAMPLES / "multihead_causal.json")
    dom = dump_dom(tmp_path, tmp_path / "page.html", "#head=0,1&explain=3,2")
    assert_ran_cleanly(dom)
    figures = re.findall(r'<figure class="matrix"( data-head="\d")?( hidden="")?>', dom)
    assert ("", "") in figures  # x, concat and output: every head's
    assert set(figures) - {("", "")} == {(' data-head="0"', ' hidden=""'), (' data-head="1"', "")}
    assert '<div id="arithmetic-body" data-shown="0,1,3,2">' in dom
    # a cell the page does not show is reported in the page, not silently ignored
    dom = dump_dom(tmp_path, tmp_path / "page.html", "#explain=7,7")
    assert 'data-errors="yes"' in dom and "Error: no shown cell 0,0,7,7" in dom


def png_colours(path: Path) -> int:
    """How many distinct colours an 8-bit RGB or RGBA PNG has (decoded here: zlib, the five filters)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, chunks = 8, {}
    while position < len(data):
        (length,), kind = struct.unpack(">I", data[position:position + 4]), data[position + 4:position + 8]
        chunks[kind] = chunks.get(kind, b"") + data[position + 8:position + 8 + length]
        position += 12 + length
    width, height, depth, colour_type = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert depth == 8 and colour_type in (2, 6)
    channels = 3 if colour_type == 2 else 4
    stride = width * channels
    raw = zlib.decompress(chunks[b"IDAT"])
    image = np.zeros((height, stride), dtype=np.uint8)
    prior = np.zeros(stride, dtype=np.int64)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], np.frombuffer(raw, np.uint8, stride, y * (stride + 1) + 1).astype(np.int64)
        if kind == 1:  # Sub: a running sum per channel
            line = np.cumsum(line.reshape(-1, channels), axis=0).reshape(-1) % 256
        elif kind == 2:
            line = (line + prior) % 256
        elif kind in (3, 4):  # Average, Paeth: byte by byte
            out, up = line.tolist(), prior.tolist()
            for x in range(stride):
                left = out[x - channels] if x >= channels else 0
                corner = up[x - channels] if x >= channels else 0
                if kind == 3:
                    out[x] = (out[x] + (left + up[x]) // 2) % 256
                else:
                    guess = left + up[x] - corner
                    near = min((abs(guess - left), 0, left), (abs(guess - up[x]), 1, up[x]),
                               (abs(guess - corner), 2, corner))[2]
                    out[x] = (out[x] + near) % 256
            line = np.array(out, dtype=np.int64)
        image[y], prior = line, line
    pixels = image.reshape(height, width, channels)[..., :3].astype(np.uint32)
    return len(np.unique((pixels[..., 0] << 16) | (pixels[..., 1] << 8) | pixels[..., 2]))


@browser
def test_in_a_browser_the_screenshot_shows_the_page(tmp_path):
    make_page(tmp_path, "compute", SAMPLES / "classic.json")
    done = chromium(tmp_path, "--hide-scrollbars", f"--screenshot={tmp_path / 'page.png'}", "--window-size=800,600",
                    (tmp_path / "page.html").as_uri() + "#explain=0,1")
    assert done.returncode == 0, done.stderr[-2000:]
    # text, the viridis cells and the highlighted arithmetic: a blank page has one colour
    assert png_colours(tmp_path / "page.png") > 200


def test_the_readme_shows_a_screenshot_of_the_classic_page_and_how_it_was_taken():
    readme = (ROOT / "README.md").read_text()
    assert "![the classic example's page" in readme and "](docs/page.png)" in readme
    command = re.search(r"```sh\n(attncli compute samples/classic.json --export-html page.html\nchromium [^`]*)```",
                        readme).group(1)
    assert "--screenshot=docs/page.png" in command and '"file://$PWD/page.html#explain=0,1"' in command
    width, height = struct.unpack(">II", (ROOT / "docs" / "page.png").read_bytes()[16:24])
    assert (width, height) == (1280, 900) and png_colours(ROOT / "docs" / "page.png") > 200
