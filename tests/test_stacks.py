"""JSON Lines computed as stacks (attncli.stacks) give every line exactly what it gets alone: the same
bytes on stdout, the same errors and warnings on stderr, the same exit code, on a mixed stream."""

from __future__ import annotations

import gc
import io
import json
import random
import select
import subprocess
import sys

import pytest
from conftest import DATA, SAMPLES
from test_cli import run, write

from attncli import stacks, stream
from attncli.generate import random_document
from attncli.stacks import signature

CLASSIC = json.loads((SAMPLES / "classic.json").read_text())


def _varied(document, rng, keys=("x",)):
    """The document with the numbers of ``keys`` drawn again (the same shapes)."""
    def draw(value):
        return [draw(item) for item in value] if isinstance(value, list) else round(rng.uniform(-2, 2), 3)
    return {**document, **{key: draw(document[key]) for key in keys if key in document}}


def mixed_lines() -> list[str]:
    rng = random.Random(15)
    samples = (json.loads(path.read_text()) for path in sorted(SAMPLES.glob("*.json")))
    kinds = [*(sample for sample in samples if isinstance(sample, dict) and "x" in sample),
             json.loads((DATA / "torch_named_separate.json").read_text())]
    for seed, options in enumerate([
            dict(seq_len=5, d_model=8, heads=2, bias=True, out_proj=True),
            dict(seq_len=9, d_model=12, heads=3, causal=True),
            dict(seq_len=4, d_model=8, heads=2, batch=3, causal_lower_right=True),
            dict(seq_len=3, d_model=6, heads=3, context_len=7, out_proj=True, bias=True),
            dict(seq_len=6, d_model=8, heads=4, kv_heads=2),
            dict(seq_len=130, d_model=16, heads=2, causal=True)]):
        kinds.append(random_document(**options, seed=seed))
    lines = []
    for _ in range(6):
        for document in kinds:
            # the same weights, other inputs; and other weights too
            lines.append(json.dumps(_varied(document, rng)))
            lines.append(json.dumps(_varied(document, rng, ("x", "context", "w_query", "w_value", "b_key", "w_out"))))
    bad_row = {**CLASSIC, "x": [[1, 0, 1, 0], [0, 2, 0], [1, 1, 1, 1]]}  # the first row's shape: grouped
    a_bool = {**CLASSIC, "x": [[1, 0, 1, 0], [0, True, 0, 2], [1, 1, 1, 1]]}
    a_string = {**CLASSIC, "w_key": [[0, 0, 1], [1, 1, 0], [0, "1", 0], [1, 1, 0]]}
    overflows = {**CLASSIC, "x": [[1e155, 0, 1e155, 0], [0, 2, 0, 2], [1, 1, 1, 1]]}
    beyond_float32 = {**CLASSIC, "x": [[1e39, 0, 1, 0], [0, 2, 0, 2], [1, 1, 1, 1]]}
    signed_zero = {**CLASSIC, "w_value": [[-0.0, 2, 0], [0, 3, 0], [1, 0, 3], [1, 1, 0]]}
    nested = {**CLASSIC, "x": [[1, 0, 1, 0], [0, [2], 0, 2], [1, 1, 1, 1]]}
    fully_masked = {**CLASSIC, "mask": [[True, False, False], [False, False, False], [True, True, True]]}
    for index, bad in enumerate([bad_row, a_bool, a_string, overflows, beyond_float32, signed_zero, nested,
                                 fully_masked, "[1, 2]", "{not json", "", {**CLASSIC, "x": [[1, 2]]},
                                 {**CLASSIC, "heads": 2}, {**CLASSIC, "x": [[1, 0, 1, 0]] * 3, "extra": 1}]):
        lines.insert(7 * index + 3, bad if isinstance(bad, str) else json.dumps(bad))
    return lines


def _compare(tmp_path, monkeypatch, lines, *options):
    path = write(tmp_path, "mixed.jsonl", "\n".join(lines) + "\n")
    stacked = run("compute", "--lines", path, *options)
    with monkeypatch.context() as alone:
        alone.setattr(stacks, "traces_of", lambda *args: None)  # every line by itself
        single = run("compute", "--lines", path, *options)
    assert stacked.exception is None or isinstance(stacked.exception, SystemExit)
    assert (stacked.exit_code, stacked.stderr) == (single.exit_code, single.stderr)
    assert stacked.stdout == single.stdout
    return stacked


@pytest.fixture
def counted_stacks(monkeypatch):
    made = []
    original = stacks.traces_of

    def counting(*args):
        traces = original(*args)
        made.append(0 if traces is None else len(traces))
        return traces

    monkeypatch.setattr(stacks, "traces_of", counting)
    return made


@pytest.mark.parametrize("dtype", ["float64", "float32", "bfloat16"])
@pytest.mark.parametrize("steps", [(), ("output",), ("softmax",), ("q", "output"), ("logits",), ("averaged",)])
def test_stacked_lines_are_byte_identical_to_lines_alone(tmp_path, monkeypatch, counted_stacks, dtype, steps):
    result = _compare(tmp_path, monkeypatch, mixed_lines(), "--dtype", dtype,
                      *(option for step in steps for option in ("--step", step)))
    assert result.exit_code == 2 and result.stderr.count("Error:") >= 8
    assert max(counted_stacks) >= 6  # stacks were made


def test_small_chunks_and_stacks_split_groups_and_keep_the_order(tmp_path, monkeypatch, counted_stacks):
    monkeypatch.setattr(stream, "CHUNK_LINES", 7)
    monkeypatch.setattr("attncli.stacks.STACK_CELLS", 40)
    _compare(tmp_path, monkeypatch, mixed_lines(), "--step", "output")
    assert 1 < max(counted_stacks) <= 7


def test_strict_stops_at_the_first_error_and_overrides_apply_to_stacks(tmp_path, monkeypatch, counted_stacks):
    lines = mixed_lines()
    strict = _compare(tmp_path, monkeypatch, lines, "--strict", "--step", "output")
    assert strict.stderr.count("Error:") == 1 and len(strict.stdout.splitlines()) == 3
    classic = [json.dumps(_varied(CLASSIC, random.Random(seed))) for seed in range(40)]
    for overrides in (("--causal", "--heads", "1", "--scale", "0.5"),
                      ("--window", "2", "--step", "output", "--dtype", "float32")):
        counted_stacks.clear()
        _compare(tmp_path, monkeypatch, classic, *overrides)
        assert counted_stacks == [40]  # the 40 lines as one stack, with the overrides


def test_signature_groups_what_may_be_stacked():
    assert signature(CLASSIC) == signature(_varied(CLASSIC, random.Random(1), ("x", "w_query")))
    assert signature(CLASSIC) != signature({**CLASSIC, "scale": "sqrt"})
    assert signature({**CLASSIC, "scale": 1}) != signature({**CLASSIC, "scale": 1.0})
    assert signature({**CLASSIC, "tokens": ["a", "b", "c"]}) is None  # labels: each line alone
    assert signature({**CLASSIC, "w_query": [CLASSIC["w_query"]]}) is None  # per-head weights
    assert signature({**CLASSIC, "batch_first": False}) is None
    assert signature([1, 2]) is None and signature({"in_proj_weight": [[1]]}) is None


@pytest.mark.parametrize("size", [1, 7, 64, 1 << 20])
def test_chunks_read_the_lines_each_line_alone_reads(size):
    from attncli.readers import _json_line, json_line_chunks

    def lines_alone(stream):  # the reference: each non-blank line parsed on its own, numbered
        return [(number, _json_line(raw)) for number, raw in enumerate(stream, start=1) if raw.strip()]

    data = b"".join([json.dumps(CLASSIC).encode() + b"\n", b"\n", b"  \r\n", b'{"x": \n', b"\xef\xbb\xbf{}\r\n",
                     b"\xef\xbb\xbf\xef\xbb\xbf{}\n", b"[1, 2]\n", b'{"a": 1, "a": 2}\n', b"\x80\n",
                     json.dumps(CLASSIC).encode() * 3 + b"\n", b'{"x": [[1]]}'])

    def plain(pairs):
        return [(number, repr(parsed) if not isinstance(parsed, Exception) else parsed.message)
                for number, parsed in pairs]

    chunks = list(json_line_chunks(io.BytesIO(data), 3, size))
    assert all(0 < len(chunk) <= 3 for chunk in chunks)
    assert plain(pair for chunk in chunks for pair in chunk) == plain(lines_alone(io.BytesIO(data)))


def test_a_chunk_of_long_lines_holds_about_its_size_in_bytes():
    from attncli.readers import json_line_chunks

    line = json.dumps(CLASSIC).encode() + b"\n"  # 419 bytes and its line break
    assert len(line) == 420
    chunks = list(json_line_chunks(io.BytesIO(line * 40), 512, 1000))
    # each chunk ends with the line that brings it to 1000 bytes (3 lines), the last with what is left
    assert [len(chunk) for chunk in chunks] == [3] * 13 + [1]
    assert [len(chunk) for chunk in json_line_chunks(io.BytesIO(line * 40), 512, 1 << 20)] == [40]
    assert [number for chunk in chunks for number, _ in chunk] == list(range(1, 41))
    assert chunks[-1][-1][1]["w_query"] == CLASSIC["w_query"]


def test_a_program_that_waits_for_each_answer_gets_it():
    # a line written, its answer read, then the next: no chunk waits for lines not yet written
    process = subprocess.Popen([sys.executable, "-m", "attncli", "compute", "--lines", "-", "--step", "output"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for _ in range(3):
            process.stdin.write(json.dumps(CLASSIC).encode() + b"\n")
            process.stdin.flush()
            ready = select.select([process.stdout], [], [], 30)[0]
            assert ready, "no answer before the next line"
            assert json.loads(process.stdout.readline())["output"][0][0] == 1.9366210616669624
        process.stdin.close()
        assert process.wait(30) == 0
    finally:
        process.kill()
        process.wait()


@pytest.mark.parametrize("blocked", [False, True])
def test_bad_lines_leave_no_cycles_for_the_collector(monkeypatch, blocked):
    # attncli.__main__ runs the cyclic collector rarely: a bad line's error must not keep its
    # frames (the line's text, its arrays) alive in a cycle; on the blocked path too, whose threads
    # keep the errors of their blocks
    from attncli import pipeline
    from attncli.pipeline import attention
    from attncli.problem import problem_from_document

    if blocked:
        monkeypatch.setattr(pipeline, "BLOCKED_MIN_CELLS", 0)

    good = json.dumps(json.loads((SAMPLES / "classic.json").read_text()))
    overflow = json.dumps({"x": [[1e200, 1e200], [1, 1]], "w_query": [[1e200, 0], [0, 1]],
                           "w_key": [[1, 0], [0, 1]], "w_value": [[1, 0], [0, 1]]})
    lines = "\n".join(["{not json", '{"x": [[1, 2], [3]]}', good, overflow] * 20) + "\n"

    def trace_of(document):
        return attention(problem_from_document(document), ["output"])

    def traces_of(documents):
        return stacks.traces_of(documents, problem_from_document, "float64", ["output"])

    gc.collect()
    gc.disable()
    try:
        results = list(stream.compute_lines(io.BytesIO(lines.encode()), trace_of, ["output"], traces_of))
        left = gc.collect()
    finally:
        gc.enable()
    assert [result.error.message.split(":")[0] if result.error else None for result in results[:4]] == [
        "line 1", "line 2", None, "line 4"]
    assert "overflows float64" in results[3].error.message
    # the blocked path's arithmetic agrees to rounding (attncli.flow)
    assert json.loads(results[2].output)["output"][0] == pytest.approx(
        [1.9366210616669624, 6.683105308334811, 1.5950684074995565], rel=1e-15)
    assert len(results) == 80 and left == 0
