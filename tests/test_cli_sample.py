import json
import subprocess
import sys

import pytest

from autokd.cli import main
from autokd.space.spec import GraphSpec
from tests.conftest import DEFAULT_THETA


def run_cli(*args):
    """The real console entry point in a subprocess: exit code, stdout, stderr."""
    p = subprocess.run([sys.executable, "-m", "autokd.cli", *map(str, args)], capture_output=True, text=True,
                       timeout=300)
    return p.returncode, p.stdout, p.stderr


def test_sample_json_for_cifar100_is_within_the_default_limit(generator_file):
    rc, out, err = run_cli("sample", "--generator", generator_file(), "--dataset", "cifar100", "--json")
    assert rc == 0, err
    obj = json.loads(out)  # exactly one JSON object on stdout
    assert {"arch_id", "params", "macs", "input_shape", "num_classes"} <= set(obj)
    assert obj["params"] <= 4_000_000 and obj["input_shape"] == [3, 32, 32] and obj["num_classes"] == 100


def test_sample_writes_arch_file_and_drawing(generator_file, tmp_path, capsys):
    arch, png = tmp_path / "a.json", tmp_path / "a.png"
    assert main(["sample", "--generator", str(generator_file()), "--input-shape", "1,28,28", "--num-classes",
                 "10", "--seed", "3", "--out", str(arch), "--draw", str(png), "--param-limit", "300000"]) == 0
    spec = json.loads(arch.read_text())
    assert spec["format"] == "autokd.arch/1" and spec["source"]["seed"] == 3
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert spec["arch_id"] in capsys.readouterr().out


def test_param_limit_from_generator_file_is_used(generator_file, capsys):
    assert main(["sample", "--generator", str(generator_file(param_limit=250_000)), "--dataset", "cifar10",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["params"] <= 250_000


@pytest.mark.parametrize("case", ["missing", "malformed", "unknown_key", "out_of_range", "impossible_shape",
                                  "unknown_dataset", "no_shape", "tiny_limit"])
def test_bad_input_is_one_line_exit_2(case, generator_file, tmp_path):
    gen = generator_file()
    args = ["sample", "--generator", gen, "--dataset", "cifar10"]
    if case == "missing":
        args[2] = tmp_path / "absent.json"
    elif case == "malformed":
        gen.write_text("{not json")
    elif case == "unknown_key":
        gen.write_text(json.dumps({"generator": {**DEFAULT_THETA, "G9": 1}}))
    elif case == "out_of_range":
        gen.write_text(json.dumps({"generator": {**DEFAULT_THETA, "G3_P": 1.5}}))
    elif case == "impossible_shape":
        args = ["sample", "--generator", gen, "--input-shape", "3,0,32", "--num-classes", "10"]
    elif case == "unknown_dataset":
        args[-1] = "imagenet-42"
    elif case == "no_shape":
        args = ["sample", "--generator", gen]
    elif case == "tiny_limit":
        args += ["--param-limit", "2000"]
    rc, out, err = run_cli(*args)
    assert rc == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and "error" in err


def test_datasets_lists_fashion_mnist_when_installed(capsys):
    from tests.conftest import FASHION_DIR
    assert main(["datasets", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["datasets"]}
    assert set(rows) >= {"fashion-mnist", "mnist", "cifar10", "cifar100", "imagefolder", "synthetic"}
    assert rows["fashion-mnist"]["available"] == (FASHION_DIR / "train-images-idx3-ubyte.gz").exists()
    assert rows["cifar100"]["available"] is False and "--data-dir" in rows["cifar100"]["where"]


def test_every_flag_has_help_and_version_prints(capsys):
    import argparse

    from autokd import __version__
    from autokd.cli import build_parser

    missing = []

    def walk(parser, prefix):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, prefix + [name])
            elif not action.help:
                missing.append(" ".join(prefix + (action.option_strings or [action.dest])))

    walk(build_parser(), [])
    assert not missing, missing
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and __version__ in capsys.readouterr().out


@pytest.mark.parametrize("graph", [GraphSpec(1, ()), GraphSpec(3, ((0, 1), (1, 2))), GraphSpec(3, ((0, 1), (0, 2)))])
def test_a_panel_is_centred_on_its_nodes_even_when_they_share_one_row(graph):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from autokd.report.draw import _draw_graph, _layered_positions

    fig, ax = plt.subplots()
    try:
        _draw_graph(ax, graph, ["#000000"] * graph.nodes, "g")
        pos = _layered_positions(graph)
        (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
        xs, ys = [x for x, _ in pos.values()], [y for _, y in pos.values()]
        # every node inside, and the nodes' middle at the panel's middle (a one-row panel was drawn at its top)
        assert x0 < min(xs) and max(xs) < x1 and y0 < min(ys) and max(ys) < y1
        assert abs((x0 + x1) / 2 - (min(xs) + max(xs)) / 2) < 1e-9
        assert abs((y0 + y1) / 2 - (min(ys) + max(ys)) / 2) < 1e-9
    finally:
        plt.close(fig)
