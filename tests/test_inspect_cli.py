"""``python -m raynas inspect``."""

import json
import subprocess
import sys

import torch

from raynas.cli import main
from search_spaces import get_space
from search_spaces.efficient_topformer import PUBLISHED, reference_cost

torch.set_num_threads(1)


def _inspect(capsys, *args):
    code = main(["inspect", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_reference_json(capsys):
    code, out, _ = _inspect(capsys, "--space", "efficient_topformer", "--arch", "topformer-b",
                            "--resolution", "512", "--num-classes", "150", "--json")
    assert code == 0
    info = json.loads(out)
    space = get_space("efficient_topformer")
    expected = reference_cost("topformer-b", 512, 150)
    assert (info["params"], info["flops"]) == (expected["params"], expected["flops"])
    assert (info["params_counted"], info["flops_counted"]) == (info["params"], info["flops"])
    assert info["published"] == PUBLISHED["topformer-b"]
    assert info["in_space"] is False
    assert info["arch_id"] == space.arch_id(info["arch"]) and info["cardinality"] == space.cardinality
    assert info["nearest"] == space.cost(info["arch"], 512, 150)
    assert info["convention"] == "macs"


def test_mmcv_convention_gives_the_published_comparable_figures(capsys):
    code, out, _ = _inspect(capsys, "--arch", "topformer-t", "--convention", "mmcv", "--json")
    assert code == 0
    info = json.loads(out)
    expected = reference_cost("topformer-t", 512, 150, convention="mmcv")
    assert info["convention"] == "mmcv"
    assert (info["params"], info["flops"]) == (expected["params"], expected["flops"])
    assert (info["params_counted"], info["flops_counted"]) == (info["params"], info["flops"])
    assert info["flops"] > reference_cost("topformer-t")["flops"]  # BN/activations/biases added
    assert abs(info["flops"] / PUBLISHED["topformer-t"]["flops"] - 1) <= 0.05
    space = get_space("efficient_topformer")
    assert info["nearest"] == space.cost(info["arch"], 512, 150, convention="mmcv")
    code, table, _ = _inspect(capsys, "--arch", "min", "--resolution", "64", "--convention", "mmcv")
    assert code == 0 and "FLOPs (mmcv)" in table


def test_bad_convention_names_the_allowed_values(capsys):
    try:
        code = main(["inspect", "--convention", "flops"])
    except SystemExit as exit:  # argparse rejects it
        code = exit.code
    assert code == 2 and "'macs', 'mmcv'" in capsys.readouterr().err


def test_random_arch_is_seeded_and_counted(capsys):
    runs = [json.loads(_inspect(capsys, "--arch", "random", "--seed", str(s), "--resolution", "96x128",
                                "--num-classes", "11", "--json")[1]) for s in (1, 1, 2)]
    assert runs[0]["arch_id"] == runs[1]["arch_id"] != runs[2]["arch_id"]
    info = runs[0]
    assert info["in_space"] is True and info["resolution"] == [96, 128]
    assert info["flops_counted"] == info["flops"] and info["params_counted"] == info["params"]
    assert sum(part["flops"] for part in info["breakdown"].values()) == info["flops"]


def test_json_file_round_trip_and_table(capsys, tmp_path):
    _, out, _ = _inspect(capsys, "--arch", "min", "--resolution", "64", "--json")
    path = tmp_path / "min.json"
    path.write_text(out)  # the command's own output is a valid --arch file
    code, table, _ = _inspect(capsys, "--arch", str(path), "--resolution", "64")
    assert code == 0
    assert json.loads(out)["arch_id"] in table
    assert "params" in table and "FLOPs (MACs)" in table and "stem_width=16" in table


def test_bad_architecture_file_is_one_line_exit_2(capsys, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(get_space("efficient_topformer").max_arch() | {"mb2_expand": 6}))
    code, out, err = _inspect(capsys, "--arch", str(path))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "'mb2_expand'" in err and "[3, 4, 5]" in err
    code, _, err = _inspect(capsys, "--arch", "topformer-x")
    assert code == 2 and "topformer-b" in err


def test_space_without_a_model(capsys):
    code, out, _ = _inspect(capsys, "--space", "nb201", "--arch", "random", "--seed", "0", "--json")
    info = json.loads(out)
    assert code == 0 and info["cardinality"] == 5**6
    assert "flops_counted" not in info and info["arch_id"] == get_space("nb201").arch_id(info["arch"])


def test_module_entry_point():
    result = subprocess.run(
        [sys.executable, "-m", "raynas", "inspect", "--arch", "max", "--resolution", "64", "--num-classes", "3", "--json"],
        capture_output=True, text=True, check=True, timeout=120,
    )
    info = json.loads(result.stdout)
    assert info["arch"] == get_space("efficient_topformer").max_arch()
    assert info["flops"] == info["flops_counted"] > 0
