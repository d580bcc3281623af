"""Every way in and out: CSV/TSV/NPY/JSON matrices, folders, NPZ, PyTorch names, stdin, JSON Lines,
csv/npz/json/table outputs, atomic files, and the errors each reader gives."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from conftest import DATA, SAMPLES
from test_cli import assert_one_line_error, run, write

from attncli import writers
from attncli.delimited import parse_csv

CLASSIC = json.loads((SAMPLES / "classic.json").read_text())
MATRICES = ("x", "w_query", "w_key", "w_value")


def json_output(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def reference_output():
    return json_output(run("compute", SAMPLES / "classic.json", "-f", "json"))


# --- the same problem through every reader gives the same numbers ---------------------------------

def test_csv_options_give_the_json_result(tmp_path, reference_output):
    paths = {}
    for key in MATRICES:
        paths[key] = write(tmp_path, f"{key}.csv", "\n".join(",".join(map(str, row)) for row in CLASSIC[key]))
    result = run("compute", "--x", paths["x"], "--w-query", paths["w_query"], "--w-key", paths["w_key"],
                 "--w-value", paths["w_value"], "--scale", "none", "-f", "json")
    assert json_output(result) == reference_output


def test_mixed_formats_for_each_matrix(tmp_path, reference_output):
    x = write(tmp_path, "x.tsv", "\n".join("\t".join(map(str, row)) for row in CLASSIC["x"]))
    np.save(tmp_path / "wq.npy", np.array(CLASSIC["w_query"], dtype=np.float64))
    w_key = write(tmp_path, "wk.json", json.dumps(CLASSIC["w_key"]))
    w_value = "\n".join(",".join(map(str, row)) for row in CLASSIC["w_value"])
    result = run("compute", "--x", x, "--w-query", tmp_path / "wq.npy", "--w-key", w_key, "--w-value", "-",
                 "--scale", "none", "-f", "json", stdin=w_value)
    assert json_output(result) == reference_output


def test_options_override_single_matrices_of_a_file(tmp_path):
    doubled = write(tmp_path, "x2.csv", "\n".join(",".join(str(2 * v) for v in row) for row in CLASSIC["x"]))
    result = json_output(run("compute", SAMPLES / "classic.json", "--x", doubled, "-f", "json", "-s", "q"))
    np.testing.assert_array_equal(result["q"], 2 * np.array(CLASSIC["x"]) @ np.array(CLASSIC["w_query"]))


def test_folder_sample_gives_the_json_result(reference_output):
    assert json_output(run("compute", SAMPLES / "classic_csv", "-f", "json")) == reference_output


def test_folder_of_mixed_files(tmp_path, reference_output):
    folder = tmp_path / "problem"
    folder.mkdir()
    np.save(folder / "x.npy", np.array(CLASSIC["x"]))
    (folder / "w_query.json").write_text(json.dumps(CLASSIC["w_query"]))
    (folder / "w_key.tsv").write_text("\n".join("\t".join(map(str, r)) for r in CLASSIC["w_key"]))
    (folder / "w_value.csv").write_text("\n".join(",".join(map(str, r)) for r in CLASSIC["w_value"]))
    (folder / "notes.md").write_text("ignored: not a matrix file type")
    assert json_output(run("compute", folder, "--scale", "none", "-f", "json")) == reference_output


def test_npz_gives_the_json_result(tmp_path, reference_output):
    np.savez(tmp_path / "p.npz", **{key: np.array(CLASSIC[key]) for key in MATRICES}, scale=np.array("none"))
    assert json_output(run("compute", tmp_path / "p.npz", "-f", "json")) == reference_output
    # and through standard input
    data = (tmp_path / "p.npz").read_bytes()
    result = runner_bytes(["compute", "-", "-f", "json"], data)
    assert json.loads(result.stdout) == reference_output


def runner_bytes(args, data: bytes):
    from typer.testing import CliRunner

    from attncli.cli import app

    return CliRunner().invoke(app, args, input=data, prog_name="attncli")


def test_stdin_gives_the_json_result(reference_output):
    assert json_output(run("compute", "-", "-f", "json", stdin=(SAMPLES / "classic.json").read_text())) == \
        reference_output


def test_json_lines_give_one_result_per_line_in_order(tmp_path, reference_output):
    scaled = {**CLASSIC, "scale": 2.0}
    path = write(tmp_path, "many.jsonl", "\n".join(json.dumps(doc) for doc in (CLASSIC, scaled, CLASSIC)) + "\n")
    result = run("compute", path)
    assert result.exit_code == 0, result.output
    outputs = [json.loads(line) for line in result.stdout.splitlines()]
    assert outputs[0] == reference_output and outputs[2] == reference_output
    assert outputs[1]["meta"]["scale"] == {"rule": "number", "factor": 2.0}
    piped = run("compute", "--lines", "-", "-f", "json", "--step", "output", stdin=path.read_text())
    assert [json.loads(line)["output"] for line in piped.stdout.splitlines()] == [o["output"] for o in outputs]


def test_a_bad_json_line_is_reported_with_its_number_and_the_others_go_on(tmp_path, reference_output):
    lines = [json.dumps(CLASSIC), "[1, 2]", "{not json", "", json.dumps({**CLASSIC, "x": [[1, 2]]}),
             json.dumps(CLASSIC)]
    path = write(tmp_path, "mixed.jsonl", "\n".join(lines) + "\n")
    result = run("compute", path, "--step", "output")
    assert result.exit_code == 2
    outputs = result.stdout.splitlines()
    assert [json.loads(line) for line in outputs] == [
        {"output": reference_output["output"], "meta": {**reference_output["meta"], "steps": {
            "output": reference_output["meta"]["steps"]["output"]}}},
        None, None, None,
        {"output": reference_output["output"], "meta": {**reference_output["meta"], "steps": {
            "output": reference_output["meta"]["steps"]["output"]}}},
    ]
    assert result.stderr.splitlines() == [
        f"Error: {path}: line 2: expected a JSON object with x, w_query, w_key and w_value, got an array",
        f"Error: {path}: line 3: invalid JSON at column 2: Expecting property name enclosed in double quotes",
        f"Error: {path}: line 5: w_query has 4 rows but x has 2 columns",
    ]
    strict = run("compute", path, "--strict", "--step", "output")
    # strict: the run stops at the bad line, having written the results before it
    assert strict.exit_code == 2 and len(strict.stdout.splitlines()) == 1
    assert strict.stderr.count("Error:") == 1


# --- PyTorch's names ------------------------------------------------------------------------------

TORCH_EXPECTED = json.loads((DATA / "torch_named_expected.json").read_text())


def test_pytorch_state_dict_in_npz_matches_multihead_attention():
    result = json_output(run("compute", DATA / "torch_named_packed.npz", "-f", "json", "-s", "output"))
    np.testing.assert_allclose(result["output"], TORCH_EXPECTED["packed"], rtol=1e-12, atol=1e-13)
    assert result["meta"]["heads"] == 3


def test_pytorch_separate_weights_in_json_match_multihead_attention():
    result = json_output(run("compute", DATA / "torch_named_separate.json", "-f", "json", "-s", "output"))
    np.testing.assert_allclose(result["output"], TORCH_EXPECTED["separate"], rtol=1e-12, atol=1e-13)


def test_pytorch_names_need_heads(tmp_path):
    with np.load(DATA / "torch_named_packed.npz") as archive:
        arrays = {key: archive[key] for key in archive.files if key != "heads"}
    np.savez(tmp_path / "noheads.npz", **arrays)
    assert_one_line_error(
        run("compute", tmp_path / "noheads.npz"),
        f"{tmp_path / 'noheads.npz'}: heads is required with PyTorch's weight names (nn.MultiheadAttention's "
        "num_heads): give it in the file or as --heads N",
    )
    result = json_output(run("compute", tmp_path / "noheads.npz", "--heads", "3", "-f", "json", "-s", "output"))
    np.testing.assert_allclose(result["output"], TORCH_EXPECTED["packed"], rtol=1e-12, atol=1e-13)


# --- outputs ---------------------------------------------------------------------------------------

def test_csv_of_a_2d_step_reads_back_as_the_same_matrix(reference_output):
    result = run("compute", SAMPLES / "classic.json", "-f", "csv", "-s", "softmax")
    assert result.exit_code == 0
    np.testing.assert_array_equal(parse_csv(result.stdout.encode()), reference_output["softmax"])
    assert result.stdout.splitlines()[1] == "6.033664854558337e-06,0.9820078648958167,0.01798610143932864"


def test_csv_of_a_higher_rank_step_is_long_form():
    result = run("compute", SAMPLES / "cross_attention.json", "-f", "csv", "-s", "logits")
    lines = result.stdout.splitlines()
    assert lines[0] == "batch,row,0,1,2,3,4"
    assert len(lines) == 1 + 2 * 3
    full = json_output(run("compute", SAMPLES / "cross_attention.json", "-f", "json", "-s", "logits"))["logits"]
    batch, row, *values = lines[-1].split(",")
    assert (batch, row) == ("1", "2")
    assert values[3:] == ["-inf", "-inf"] and [float(v) for v in values[:3]] == full[1][2][:3]


STEPS = ("q", "k", "v", "scores", "logits", "softmax", "concat", "output")


def test_every_csv_attncli_writes_reads_back_into_check(tmp_path):
    # a batched multi-head problem: each step's CSV is long form (batch, heads, row, columns)
    problem = tmp_path / "mha.json"
    problem.write_text(run("random", "--seq-len", "3", "--d-model", "4", "--heads", "2", "--batch", "2",
                           "--out-proj", "--causal", "--seed", "1").stdout)
    full = json_output(run("compute", problem, "-f", "json"))
    assert run("compute", problem, "-o", f"{tmp_path}/steps/", "-f", "csv").exit_code == 0
    for step in STEPS:
        written = write(tmp_path, f"{step}.csv", run("compute", problem, "-s", step, "-f", "csv").stdout)
        assert written.read_text().startswith("batch,")
        for path in (written, tmp_path / "steps" / f"{step}.csv"):
            result = run("check", problem, "-e", path, "-s", step)
            assert result.exit_code == 0 and result.stdout.startswith(f"✓ {step} agrees"), result.output
            # JSON's null is a masked logit, −∞ in CSV
            np.testing.assert_array_equal(parse_csv(path.read_bytes(), masked=True),
                                          np.nan_to_num(np.array(full[step], dtype=float), nan=-np.inf))
    # a step's long form also reads as a matrix option: the batched concat as a 3-D x
    result = run("compute", problem, "--x", tmp_path / "concat.csv", "-s", "q", "-f", "json")
    assert np.shape(json_output(result)["q"]) == (2, 2, 3, 2)


def test_several_steps_in_csv_need_a_folder(tmp_path, reference_output):
    assert_one_line_error(
        run("compute", SAMPLES / "classic.json", "-f", "csv"),
        "--format csv: holds one step; choose it with --step (q, k, v, scores, softmax, output), "
        "or give -o FOLDER/ for one file per step",
    )
    result = run("compute", SAMPLES / "classic.json", "-o", f"{tmp_path}/steps/")
    assert result.exit_code == 0 and result.stdout == ""
    assert sorted(p.name for p in (tmp_path / "steps").iterdir()) == [
        "k.csv", "output.csv", "q.csv", "scores.csv", "softmax.csv", "v.csv"]
    np.testing.assert_array_equal(parse_csv((tmp_path / "steps" / "output.csv").read_bytes()),
                                  reference_output["output"])


def test_npz_holds_one_array_per_step_and_the_meta(tmp_path, reference_output):
    result = run("compute", SAMPLES / "classic.json", "-o", tmp_path / "trace.npz")
    assert result.exit_code == 0 and result.stdout == ""
    with np.load(tmp_path / "trace.npz", allow_pickle=False) as archive:
        assert archive.files == ["q", "k", "v", "scores", "softmax", "output", "meta"]
        np.testing.assert_array_equal(archive["output"], reference_output["output"])
        assert json.loads(str(archive["meta"])) == reference_output["meta"]


@pytest.mark.parametrize(("name", "check"), [
    ("out.json", lambda data, ref: json.loads(data) == ref),
    ("out.txt", lambda data, ref: b"output = softmax\xc2\xb7V   3\xc3\x973" in data and b"\x1b[" not in data
     and b"\xe2\x94\x82         0 \xe2\x94\x82 1.9366 \xe2\x94\x82 6.6831 \xe2\x94\x82 1.5951 \xe2\x94\x82" in data),
])
def test_output_format_follows_the_extension(tmp_path, reference_output, name, check):
    result = run("compute", SAMPLES / "classic.json", "-o", tmp_path / name)
    assert result.exit_code == 0 and result.stdout == ""
    assert check((tmp_path / name).read_bytes(), reference_output)


def test_unknown_output_extension_is_an_error(tmp_path):
    assert_one_line_error(
        run("compute", SAMPLES / "classic.json", "-o", tmp_path / "out.xlsx"),
        f"{tmp_path / 'out.xlsx'}: has no extension attncli writes (.json, .jsonl, .csv, .npz, .txt); "
        "give --format, or end a folder's name with /",
    )


def test_never_writes_over_an_input(tmp_path):
    problem = tmp_path / "problem.json"
    shutil.copy(SAMPLES / "classic.json", problem)
    before = problem.read_bytes()
    assert_one_line_error(
        run("compute", problem, "-o", problem, "-f", "json"),
        f"{problem}: is one of this run's inputs ({problem}); attncli never writes over its input",
    )
    os.link(problem, tmp_path / "alias.json")
    result = run("compute", problem, "-o", tmp_path / "alias.json", "-f", "json")
    assert result.exit_code == 2 and problem.read_bytes() == before


def test_an_interrupted_write_leaves_no_file(tmp_path, monkeypatch):
    target = tmp_path / "out.json"

    def failing_replace(source, destination):
        raise KeyboardInterrupt

    monkeypatch.setattr(writers.os, "replace", failing_replace)
    with pytest.raises(KeyboardInterrupt):
        writers.write_atomic(target, b"{}")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "out.json"
    target.write_text("old")

    def failing_fsync(descriptor):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writers.os, "fsync", failing_fsync)
    result = run("compute", SAMPLES / "classic.json", "-o", target)
    assert_one_line_error(result, f"{target}: cannot be written: No space left on device")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_an_npz_file_is_written_straight_into_the_file_and_atomically(tmp_path, monkeypatch):
    # every step of a medium problem is hundreds of MB: np.savez writes into the file, no copy in memory
    from attncli import export

    target = tmp_path / "trace.npz"
    target.write_text("old")
    handles = []
    real = export.write_npz
    monkeypatch.setattr(export, "write_npz", lambda trace, steps, handle: (handles.append(handle),
                                                                          real(trace, steps, handle)))
    assert run("compute", SAMPLES / "classic.json", "-o", target).exit_code == 0
    assert [type(handle).__name__ for handle in handles] == ["BufferedWriter"]
    with np.load(target) as archive:
        assert archive["output"][0][0] == 1.9366210616669624 and "meta" in archive.files

    def full_disk(trace, steps, handle):
        handle.write(b"PK")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export, "write_npz", full_disk)
    assert_one_line_error(run("compute", SAMPLES / "classic.json", "-o", target),
                          f"{target}: cannot be written: No space left on device")
    with np.load(target) as archive:
        assert archive["output"][0][0] == 1.9366210616669624
    assert [p.name for p in tmp_path.iterdir()] == ["trace.npz"]


def test_json_lines_to_a_file_are_atomic(tmp_path, monkeypatch):
    source = write(tmp_path, "in.jsonl", json.dumps(CLASSIC) + "\n" + json.dumps(CLASSIC) + "\n")
    result = run("compute", source, "-o", tmp_path / "out.jsonl", "-s", "output")
    assert result.exit_code == 0
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    assert [json.loads(line)["output"][0][0] for line in lines] == [1.9366210616669624] * 2
    # interrupted after the first line: the old file stays whole and no partial file appears
    from attncli import stream

    real = stream.trace_to_json
    calls = []

    def interrupted(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(stream, "trace_to_json", interrupted)

    def stack_interrupted(*args):  # the two lines are one stack: interrupted before they are written
        raise KeyboardInterrupt

    monkeypatch.setattr(stream, "traces_to_json", stack_interrupted)
    result = run("compute", source, "-o", tmp_path / "out.jsonl", "-s", "output")
    assert result.exit_code != 0
    assert (tmp_path / "out.jsonl").read_text().splitlines() == lines
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl"]


# --- random ---------------------------------------------------------------------------------------

def test_random_is_reproducible_and_valid():
    first = run("random", "--seq-len", "4", "--d-model", "8", "--heads", "2", "--seed", "1")
    again = run("random", "--seq-len", "4", "--d-model", "8", "--heads", "2", "--seed", "1")
    other = run("random", "--seq-len", "4", "--d-model", "8", "--heads", "2", "--seed", "2")
    assert first.stdout == again.stdout != other.stdout
    assert first.stdout.count("\n") == 1
    document = json.loads(first.stdout)
    assert np.shape(document["x"]) == (4, 8) and document["heads"] == 2
    computed = json_output(run("compute", "-", "-f", "json", "-s", "output", stdin=first.stdout))
    assert np.shape(computed["output"]) == (4, 8)


def test_random_options_shape_the_document():
    result = run("random", "--seq-len", "3", "--d-model", "4", "--heads", "2", "--batch", "2", "--context-len", "5",
                 "--out-proj", "--bias", "--causal", "--seed", "0")
    document = json.loads(result.stdout)
    assert np.shape(document["x"]) == (2, 3, 4) and np.shape(document["context"]) == (2, 5, 4)
    assert {"b_query", "b_key", "b_value", "w_out", "b_out"} <= set(document) and document["mask"] == "causal"
    computed = json_output(run("compute", "-", "-f", "json", stdin=result.stdout))
    assert computed["meta"]["steps"]["softmax"]["shape"] == [2, 2, 3, 5]


def test_random_refuses_heads_that_do_not_divide_d_model():
    assert_one_line_error(run("random", "--seq-len", "2", "--d-model", "6", "--heads", "4"),
                          "random: d_model 6 does not split into 4 heads (head counts that would: 1, 2, 3, 6)")


# --- CSV details and bad input --------------------------------------------------------------------

@pytest.mark.parametrize(("name", "content", "message"), [
    ("ragged.csv", "1,2,3\n4,5\n", "line 2 has 2 values but line 1 has 3"),
    ("cell.csv", "a,b\n1,2\n3,x\n", "line 3, column 2: 'x' is not a number"),
    ("empty_cell.csv", "1,2,\n", "line 1, column 3: an empty cell is not a number"),
    ("nan.csv", "1,nan\n", "line 1, column 2: nan is not a finite number"),
    ("empty.csv", "", "is empty"),
    ("comments.csv", "# only a comment\n\n", "holds no numbers"),
    ("x.xlsx", "1,2", "unknown extension '.xlsx' for a matrix: use .csv, .tsv, .json, .npy or .txt"),
    ("object.json", '{"x": [[1]]}', "holds a JSON object; a matrix file holds a bare array such as [[1, 2], [3, 4]]"),
])
def test_bad_matrix_files(tmp_path, name, content, message):
    path = write(tmp_path, name, content)
    result = run("compute", SAMPLES / "classic.json", "--x", path)
    assert_one_line_error(result, f"{path}: {message}")


def test_a_1d_array_where_a_matrix_belongs(tmp_path):
    np.save(tmp_path / "x.npy", np.array([1.0, 2.0, 3.0, 4.0]))
    assert_one_line_error(run("compute", SAMPLES / "classic.json", "--x", tmp_path / "x.npy"),
                          f"{tmp_path / 'x.npy'}: x must be a 2-D or 3-D array, got a 1-D array of shape 4")


def test_a_pickled_npy_is_refused_without_loading_it(tmp_path):
    np.save(tmp_path / "x.npy", np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    assert_one_line_error(
        run("compute", SAMPLES / "classic.json", "--x", tmp_path / "x.npy"),
        f"{tmp_path / 'x.npy'}: holds Python objects (a pickle), which attncli never loads: save plain numeric "
        "arrays (np.save with a float or bool array)",
    )
    np.savez(tmp_path / "p.npz", x=np.array([{"a": 1}], dtype=object))
    assert_one_line_error(
        run("compute", tmp_path / "p.npz"),
        f"{tmp_path / 'p.npz'}: array 'x' holds Python objects (a pickle), which attncli never loads: save plain "
        "numeric arrays (np.save with a float or bool array)",
    )


def test_unknown_problem_extension(tmp_path):
    path = write(tmp_path, "problem.yaml", "x: 1")
    assert_one_line_error(run("compute", path),
                          f"{path}: unknown extension '.yaml': a problem is a .json or .npz file or a folder "
                          "(single matrices go in --x, --w-query, …)")


@pytest.mark.parametrize(("given", "message"), [
    ("nonexistent", "no such file"),
    ("nonexistent.json", "no such file"),
    ("nonexistent.csv", "no such file"),
    ("missing_dir/", "no such folder"),
    ("missing_dir/x.json", "no such file"),
])
def test_a_missing_input_is_named_missing_not_an_unknown_kind(tmp_path, given, message):
    path = f"{tmp_path}/{given}"
    assert_one_line_error(run("compute", path), f"{path}: {message}")
    assert_one_line_error(run("compute", SAMPLES / "classic.json", "--x", path), f"{path}: {message}")
    assert_one_line_error(run("check", SAMPLES / "classic.json", "-e", path), f"{path}: {message}")


def test_folder_errors_name_the_file_at_fault(tmp_path):
    folder = tmp_path / "p"
    shutil.copytree(SAMPLES / "classic_csv", folder)
    (folder / "w_key.csv").write_text("0,0,1\n1,1,0\n0,1\n")
    assert_one_line_error(run("compute", folder), f"{folder / 'w_key.csv'}: line 3 has 2 values but line 1 has 3")
    (folder / "w_key.csv").write_text("0,0,1\n1,1,0\n0,1,0\n")
    assert_one_line_error(run("compute", folder), f"{folder / 'w_key.csv'}: w_key has 3 rows but x has 4 columns")
    (folder / "w_key.csv").unlink()
    (folder / "w_kee.csv").write_text("1\n")
    assert_one_line_error(run("compute", folder),
                          f"{folder / 'w_kee.csv'}: is not named after a matrix attncli knows; did you mean 'w_key'?")
    (folder / "w_kee.csv").rename(folder / "WQ.csv")
    assert_one_line_error(run("compute", folder),
                          f"{folder / 'WQ.csv'}: is not named after a matrix attncli knows; did you mean 'w_query'?")


def test_only_one_input_may_come_from_stdin():
    assert_one_line_error(run("compute", "-", "--x", "-", stdin="{}"),
                          "<stdin>: standard input (-) can feed only one input")


# --- from review: writing where a careful user expects, and nowhere else ---------------------------

def test_a_symlink_target_is_written_through(tmp_path):
    real = tmp_path / "real.json"
    real.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    assert run("compute", SAMPLES / "classic.json", "-o", link, "-s", "output").exit_code == 0
    assert link.is_symlink()
    assert json.loads(real.read_text())["output"][0][0] == 1.9366210616669624


def test_a_fifo_target_is_written_directly(tmp_path):
    import threading

    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    result = run("compute", SAMPLES / "classic.json", "-o", fifo, "-s", "output", "-f", "json")
    reader.join(timeout=10)
    assert result.exit_code == 0, result.output
    assert json.loads(received[0])["output"][0][0] == 1.9366210616669624
    assert fifo.is_fifo()


def test_written_files_keep_or_get_ordinary_permissions(tmp_path):
    existing = tmp_path / "shared.json"
    existing.write_text("old")
    existing.chmod(0o640)
    assert run("compute", SAMPLES / "classic.json", "-o", existing).exit_code == 0
    assert existing.stat().st_mode & 0o777 == 0o640
    previous = os.umask(0o022)
    try:
        assert run("compute", SAMPLES / "classic.json", "-o", tmp_path / "new.json").exit_code == 0
    finally:
        os.umask(previous)
    assert (tmp_path / "new.json").stat().st_mode & 0o777 == 0o644


def test_never_writes_over_a_file_read_from_a_folder(tmp_path):
    folder = tmp_path / "problem"
    shutil.copytree(SAMPLES / "classic_csv", folder)
    before = (folder / "x.csv").read_bytes()
    assert_one_line_error(
        run("compute", folder, "-s", "q", "-o", folder / "x.csv"),
        f"{folder / 'x.csv'}: is one of this run's inputs ({folder / 'x.csv'}); attncli never writes over its input",
    )
    assert (folder / "x.csv").read_bytes() == before


def test_a_typo_in_the_first_csv_row_is_an_error_not_a_header(tmp_path):
    path = write(tmp_path, "x.csv", "1,O,1,0\n0,2,0,2\n1,1,1,1\n")
    assert_one_line_error(run("compute", SAMPLES / "classic.json", "--x", path),
                          f"{path}: line 1, column 2: 'O' is not a number")


def test_a_mask_csv_may_say_true_and_false(tmp_path, reference_output):
    path = write(tmp_path, "mask.csv", "true,false,false\ntrue,true,false\ntrue,true,true\n")
    causal = json_output(run("compute", SAMPLES / "classic.json", "--causal", "-f", "json", "-s", "softmax"))
    assert json_output(run("compute", SAMPLES / "classic.json", "--mask", path, "-f", "json", "-s", "softmax")
                       )["softmax"] == causal["softmax"]


def test_a_json_matrix_with_a_bom_on_stdin(reference_output):
    text = "\ufeff" + json.dumps(CLASSIC["x"])
    result = run("compute", SAMPLES / "classic.json", "--x", "-", "-f", "json", stdin=text.encode())
    assert json_output(result) == reference_output


@pytest.mark.parametrize(("document", "message"), [
    ('{"w_query": [[1]], "w_key": [[1]], "w_value": [[1]], "x": ' + "[" * 600 + "1" + "]" * 600 + "}",
     "x is nested more than 4 deep; a matrix has at most 4 axes"),
    ('{"x": [[1' + "0" * 5000 + "]]}", "invalid JSON: Exceeds the limit (4300 digits) for integer string conversion: "
                                       "value has 5001 digits; use sys.set_int_max_str_digits() to increase the limit"),
])
def test_pathological_json_is_an_error(document, message):
    assert_one_line_error(run("compute", "-", stdin=document), f"<stdin>: {message}")


def test_output_path_mistakes(tmp_path):
    afile = write(tmp_path, "afile", "x")
    assert_one_line_error(run("compute", SAMPLES / "classic.json", "-o", f"{afile}/"),
                          f"{afile}/q.csv: cannot be written: a file stands where its folder should be")
    assert_one_line_error(run("compute", SAMPLES / "classic.json", "-o", f"{afile}/out.json"),
                          f"{afile}/out.json: cannot be written: a file stands where its folder should be")
    assert_one_line_error(run("compute", SAMPLES / "classic.json", "-o", ""),
                          "--output: is empty: give a file or a folder ending in /")
    source = write(tmp_path, "in.jsonl", json.dumps(CLASSIC) + "\n")
    assert_one_line_error(run("compute", source, "-o", tmp_path / "out.csv"),
                          f"{tmp_path / 'out.csv'}: JSON Lines are written as JSON: give a .jsonl or .json file")


def test_random_refuses_a_negative_seed():
    assert_one_line_error(run("random", "--seq-len", "2", "--d-model", "2", "--seed", "-1"),
                          "Invalid value for '--seed': -1 is not allowed; use a whole number of at least 0 "
                          "(see 'attncli random --help')")
