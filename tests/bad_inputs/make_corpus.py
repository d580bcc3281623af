"""Write the bad-input corpus: one malformed input per file, and cases.json, which says how each is
run and the one-line error it must give. Rerun from the project root after changing a case:

    python tests/bad_inputs/make_corpus.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
GOOD = {
    "x": [[1, 0, 1, 0], [0, 2, 0, 2], [1, 1, 1, 1]],
    "w_query": [[1, 0, 1], [1, 0, 0], [0, 0, 1], [0, 1, 1]],
    "w_key": [[0, 0, 1], [1, 1, 0], [0, 1, 0], [1, 1, 0]],
    "w_value": [[0, 2, 0], [0, 3, 0], [1, 0, 3], [1, 1, 0]],
}


def doc(**changes):
    document = {**GOOD, **changes}
    return json.dumps({key: value for key, value in document.items() if value is not ...})


# the document one key to a line, as people write it: "{", the four keys on lines 2-5, "}"
LINES = ["{", *(f"  {json.dumps(key)}: {json.dumps(value)}," for key, value in GOOD.items()), "}"]

# name -> (content, extra command-line arguments, the message after "Error: FILE: ")
JSON_CASES = {
    "trailing_comma.json": ("\n".join(LINES), [],
                            f"line 5, column {len(LINES[4])}: a comma before '}}' is not allowed in JSON"),
    "missing_comma.json": ("\n".join([*LINES[:3], LINES[3].rstrip(","), LINES[4].rstrip(","), "}"]), [],
                           "line 5: expected a comma after the value on line 4"),
    "truncated.json": (doc()[:40], [], "invalid JSON at line 1, column 41: Expecting ',' delimiter"),
    "empty.json": ("", [], "is empty; expected a JSON object"),
    "whitespace.json": ("  \n\t\n", [], "is empty; expected a JSON object"),
    "array_top.json": ("[1, 2, 3]", [], "expected a JSON object with x, w_query, w_key and w_value, got an array"),
    "string_top.json": ('"hello"', [], "expected a JSON object with x, w_query, w_key and w_value, got the string 'hello'"),
    "missing_x.json": (doc(x=...), [], "missing x (the input, (seq_len, d_model) or (batch, seq_len, d_model))"),
    "missing_w_value.json": (doc(w_value=...), [], "missing w_value (the value weights, (d_model, heads*head_dim_v))"),
    "string_cell.json": (doc(x=[[1, "0", 1, 0], [0, 2, 0, 2], [1, 1, 1, 1]]), [], "x[0][1] is the string '0', expected a number"),
    "null_cell.json": (doc(x=[[1, None, 1, 0], [0, 2, 0, 2], [1, 1, 1, 1]]), [], "x[0][1] is null, expected a number"),
    "bool_cell.json": (doc(w_key=[[True, 0, 1], [1, 1, 0], [0, 1, 0], [1, 1, 0]]), [], "w_key[0][0] is true, expected a number"),
    "object_for_matrix.json": (doc(x={"rows": 3}), [], "x is an object, expected a number"),
    "nested_too_deep.json": (doc(x=[[[[[[1]]]]]]), [], "x must be a 2-D or 3-D array, got a 6-D array of shape "
                                                       "1×1×1×1×1×1"),
    "nested_far_too_deep.json": (doc(x=[[[[[[[[[[1, 2], [3]]]]]]]]]]), [],
                                 "x is nested more than 4 deep; a matrix has at most 4 axes"),
    "empty_matrix.json": (doc(x=[]), [], "x must be a 2-D or 3-D array, got a 1-D array of shape 0"),
    "zero_width.json": (doc(x=[[], [], []]), [], "x is empty (shape 3×0)"),
    "ragged.json": (doc(x=[[1, 0, 1, 0], [0, 2, 0], [1, 1, 1, 1]]), [], "x: row 1 has 3 values but row 0 has 4"),
    "nan_literal.json": (doc().replace("[[1, 0, 1, 0]", "[[1, NaN, 1, 0]", 1), [], "x[0][1] is NaN; every value must be a finite number"),
    "infinity_literal.json": (doc().replace("[[1, 0, 1, 0]", "[[1, Infinity, 1, 0]", 1), [], "x[0][1] is infinite (beyond ±1.8e308); every value must be a finite number"),
    "huge_number.json": (doc().replace("[[1, 0, 1, 0]", "[[1, 1e400, 1, 0]", 1), [], "x[0][1] is infinite (beyond ±1.8e308); every value must be a finite number"),
    "overflow_1e308.json": (doc(x=[[1e308, 1e308, 1e308, 1e308]] * 3), [], "q overflows float64 at (q_len 0, head_dim 0): beyond ±1.8e308; scale the inputs or weights down"),
    "heads_zero.json": (doc(heads=0), [], "heads is 0; it must be at least 1"),
    "heads_negative.json": (doc(heads=-3), [], "heads is -3; it must be at least 1"),
    "heads_fraction.json": (doc(heads=1.5), [], "heads is 1.5; it must be a whole number of at least 1"),
    "heads_string.json": (doc(heads="two"), [], "heads is the string 'two'; it must be a whole number of at least 1"),
    "heads_not_dividing.json": (doc(heads=2), [], "w_query has 3 columns, which do not split into 2 heads (head counts that would: 1, 3)"),
    "scale_zero.json": (doc(scale=0), [], "scale is 0; it must be a positive finite number"),
    "scale_negative.json": (doc(scale=-0.5), [], "scale is -0.5; it must be a positive finite number"),
    "scale_typo.json": (doc(scale="sqrtt"), [], "scale is 'sqrtt'; use \"sqrt\" (1/sqrt(head_dim)), \"none\" (1) or a positive number; did you mean 'sqrt'?"),
    "mask_wrong_shape.json": (doc(mask=[[1, 1], [1, 1]]), [], "mask has shape 2×2 but the scores need 3×3 (q_len, k_len)"),
    "mask_not_binary.json": (doc(mask=[[1, 0.5, 1]] * 3), [], "mask[0][1] is 0.5; a mask holds 0/1 or false/true (1 = may attend)"),
    "mask_typo.json": (doc(mask="casual"), [], "mask is 'casual'; use \"causal\", \"causal_lower_right\" or an array of 0/1 (1 = may attend); did you mean 'causal'?"),
    "context_other_batch.json": (doc(x=[GOOD["x"]] * 2, context=[GOOD["x"]] * 3), [], "context has a batch of 3 but x has 2"),
    "weights_mismatch.json": (doc(w_query=GOOD["w_query"][:3]), [], "w_query has 3 rows but x has 4 columns"),
    "unknown_key.json": (doc(w_qeury=[[1]]), [], "unknown key 'w_qeury'; did you mean 'w_query'?"),
    "duplicate_key.json": ('{"x": [[1]], "x": [[2]]}', [], "key 'x' appears twice in one object"),
}


def main() -> None:
    cases = {}
    for name, (content, args, message) in JSON_CASES.items():
        (HERE / name).write_text(content)
        cases[name] = {"args": args, "message": message}
    # bytes and other formats
    (HERE / "binary.json").write_bytes(bytes(range(256)))
    cases["binary.json"] = {"args": [], "message": "is not UTF-8 text: byte 0x80 at offset 128"}
    (HERE / "utf16.json").write_bytes(doc().encode("utf-16"))
    cases["utf16.json"] = {"args": [], "message": "is not UTF-8 text: byte 0xff at offset 0 (it looks like UTF-16: save it as UTF-8)"}
    (HERE / "ragged.csv").write_text("1,0,1,0\n0,2,0\n1,1,1,1\n")
    cases["ragged.csv"] = {"problem": "good.json", "option": "--x", "message": "line 2 has 3 values but line 1 has 4"}
    (HERE / "word.csv").write_text("1,0,1,0\n0,two,0,2\n1,1,1,1\n")
    cases["word.csv"] = {"problem": "good.json", "option": "--x", "message": "line 2, column 2: 'two' is not a number"}
    (HERE / "empty.csv").write_text("")
    cases["empty.csv"] = {"problem": "good.json", "option": "--x", "message": "is empty"}
    np.save(HERE / "pickled.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    cases["pickled.npy"] = {"problem": "good.json", "option": "--x",
                            "message": "holds Python objects (a pickle), which attncli never loads: save plain "
                                       "numeric arrays (np.save with a float or bool array)"}
    np.save(HERE / "vector.npy", np.array([1.0, 2.0, 3.0, 4.0]))
    cases["vector.npy"] = {"problem": "good.json", "option": "--x",
                           "message": "x must be a 2-D or 3-D array, got a 1-D array of shape 4"}
    (HERE / "not_really.npz").write_bytes(b"PK\x03\x04 this is not a zip archive")
    cases["not_really.npz"] = {"args": [], "message": "is not a valid .npz file (File is not a zip file)"}
    (HERE / "good.json").write_text(doc())
    (HERE / "noextension").write_text(doc())
    cases["noextension"] = {"args": [], "message": "unknown extension '(none)': a problem is a .json or .npz file or a "
                                                   "folder (single matrices go in --x, --w-query, …)"}
    (HERE / "lines_not_objects.jsonl").write_text("[1, 2]\n")
    cases["lines_not_objects.jsonl"] = {"args": [], "message": "line 1: expected a JSON object with x, w_query, w_key "
                                                               "and w_value, got an array"}
    folder = HERE / "folder_without_x"
    folder.mkdir(exist_ok=True)
    (folder / "w_query.csv").write_text("1,0,1\n1,0,0\n0,0,1\n0,1,1\n")
    cases["folder_without_x"] = {"args": [], "message": "holds no x (x.csv, x.tsv, x.json, x.npy or x.txt); a problem "
                                                        "folder has one file per matrix"}
    # bad options on a good problem: usage errors, one line each
    for name, args, message in (
        ("option_heads_zero", ["--heads", "0"], "Invalid value for '--heads': 0 is not allowed; use a whole number "
                                                "of at least 1 (see 'attncli compute --help')"),
        ("option_scale_word", ["--scale", "sqrtt"], None),
        ("option_dtype", ["--dtype", "float16"], "Invalid value for '--dtype': 'float16' is not one of float64, "
                                                 "float32 (see 'attncli compute --help')"),
        ("option_precision", ["--precision", "99"], "Invalid value for '--precision': 99 is not allowed; use a "
                                                    "whole number from 0 to 17 (see 'attncli compute --help')"),
        ("option_step", ["--step", "attn"], "Invalid value for --step: 'attn' is not a step; the steps are q, k, v, "
                                            "q_normed, k_normed, q_rotated, k_rotated, scores, logits, capped, biased, softmax, concat, output; did you mean 'softmax'? "
                                            "(see 'attncli compute --help')"),
        ("option_format", ["--format", "xlsx"], "Invalid value for '--format' / '-f': 'xlsx' is not one of table, "
                                                "json, csv, npz (see 'attncli compute --help')"),
    ):
        if message is None:  # an option whose value the problem checks: the error names the file
            cases[name] = {"problem": "good.json", "args": args,
                           "message": "scale is 'sqrtt'; use \"sqrt\" (1/sqrt(head_dim)), \"none\" (1) or a "
                                      "positive number; did you mean 'sqrt'?"}
        else:
            cases[name] = {"problem": "good.json", "args": args, "message": message, "usage": True}
    (HERE / "cases.json").write_text(json.dumps(cases, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {len(cases)} cases to {HERE}")


if __name__ == "__main__":
    main()
