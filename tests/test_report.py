"""The HTML report: written, self-contained, every plot referenced and present; the report command's errors."""

from __future__ import annotations

import base64
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.report import plots_dir_for, write_report
from raynas.cli import main
from raynas.errors import UserError

SETTINGS = {
    "space": "toy",
    "metric": "accuracy",
    "mode": "max",
    "constraint": {"metric": "latency_ms", "limit": 20.0},
    "budget": 12,
    "seeds": [0, 1],
    "searchers": ["cds", "random", "optuna"],
}


def make_sweep(seed: int = 0) -> pd.DataFrame:
    """A small tidy sweep table in the loader's schema; only optuna proposes architectures over the latency limit."""
    rng = np.random.default_rng(seed)
    rows = []
    for searcher in SETTINGS["searchers"]:
        for run in SETTINGS["seeds"]:
            order = 0
            feasible_count = 0
            while feasible_count < SETTINGS["budget"]:
                order += 1
                ops = rng.integers(0, 5, size=3)
                latency = 2.0 + 4.0 * ops.sum() / 3 + rng.uniform(0, 14 if searcher == "optuna" else 2)
                feasible = bool(latency <= SETTINGS["constraint"]["limit"])
                feasible_count += feasible
                rows.append(
                    {
                        "searcher": searcher,
                        "seed": run,
                        "order": order,
                        "trial_id": f"{searcher}_{run}_{order}",
                        "arch_id": "".join(map(str, ops)).rjust(16, "0"),
                        **{f"config/op_{i}": int(op) for i, op in enumerate(ops)},
                        "accuracy": 80.0 + 2.0 * ops.sum() / 3 + rng.normal(0, 1),
                        "latency_ms": latency,
                        "flops": 1e6 * (1 + ops.sum()),
                        "params": 1e4 * (1 + ops.sum()),
                        "feasible": feasible,
                        "wall_time_s": 0.01,
                    }
                )
    return pd.DataFrame(rows)


class ReportParser(HTMLParser):
    """Collects every ``<img>`` ``src`` with the ``href`` of its enclosing ``<a>``, and the tables' cell texts
    with the ``<h2>`` heading each comes under (``table(heading)``)."""

    def __init__(self):
        super().__init__()
        self.images: list[tuple[str, str]] = []  # (href of the enclosing link, img src)
        self.tables: list[list[list[str]]] = []
        self.headings: list[str] = []  # of each table
        self._heading = ""
        self._href = None
        self._cell = None

    def table(self, heading: str) -> list[list[str]]:
        """The first table under the ``<h2>`` ``heading``."""
        return self.tables[self.headings.index(heading)]

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "a":
            self._href = attrs.get("href")
        elif tag == "img":
            self.images.append((self._href, attrs["src"]))
        elif tag == "table":
            self.tables.append([])
            self.headings.append(self._heading)
        elif tag == "h2":
            self._heading, self._cell = "", ""
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = ""

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag):
        if tag == "a":
            self._href = None
        elif tag in ("td", "th"):
            self.tables[-1][-1].append(self._cell.strip())
            self._cell = None
        elif tag == "h2":
            self._heading, self._cell = self._cell.strip(), None


def parse(html_path: Path) -> ReportParser:
    parser = ReportParser()
    parser.feed(html_path.read_text(encoding="utf-8"))
    return parser


def check_plots_referenced(html_path: Path) -> set[str]:
    """Every PNG beside the report is linked, every linked PNG exists and equals the embedded image."""
    images = parse(html_path).images
    plots_dir = plots_dir_for(html_path)
    written = {p.name for p in plots_dir.glob("*")}
    linked = set()
    for href, src in images:
        assert href is not None and src.startswith("data:image/png;base64,")
        path = html_path.parent / href
        assert path.parent == plots_dir and path.is_file(), href
        embedded = base64.b64decode(src.split(",", 1)[1])
        assert embedded.startswith(b"\x89PNG\r\n\x1a\n") and embedded == path.read_bytes()
        linked.add(path.name)
    assert linked == written and len(images) == len(written)
    return written


def test_report_written_with_every_plot_referenced(tmp_path):
    df = make_sweep()
    out = write_report(df, SETTINGS, tmp_path / "report.html", top_k=5)
    text = out.read_text(encoding="utf-8")
    assert len(text) > 10_000
    plots = check_plots_referenced(out)
    assert plots == {"pareto_flops.png", "pareto_latency_ms.png", "best_so_far.png", "regret.png", "regret_time.png",
                     "hypervolume.png"}
    assert "Plots not drawn" not in text
    # regret with 95% intervals per searcher at the sweep's budget, and which pairs are distinguishable
    assert "Regret with 95% intervals" in text and "ci_low" in text and "distinguishable" in text
    # the best feasible architecture and the infeasible counts are in the report
    best = df[df.feasible].sort_values("accuracy", ascending=False).iloc[0]
    assert best["arch_id"] in text
    proposals = {row[0]: row[1:] for row in parse(out).table("Proposals per searcher")[1:]}  # minus its header
    optuna = df[df.searcher == "optuna"]
    infeasible = int((~optuna.feasible).sum())
    assert infeasible > 0
    assert proposals["optuna"] == ["2", str(len(optuna)), "24", str(infeasible), "0"]  # ..., evaluated, infeasible, repeats
    assert proposals["cds"] == ["2", "24", "24", "0", "0"]
    settings = {row[0]: row[1] for row in parse(out).table("Settings")}
    assert settings["space"] == "toy" and settings["constraint"] == '{"metric": "latency_ms", "limit": 20.0}'
    # without a benchmark table, regret is measured against the best feasible trial of the sweep
    assert f"optimum {best['accuracy']:g} (the best feasible trial of the sweep)" in text


def test_report_skips_absent_columns_and_replaces_old_plots(tmp_path):
    out = tmp_path / "sweep" / "report.html"
    write_report(make_sweep(), SETTINGS, out)
    assert len(list(plots_dir_for(out).glob("*.png"))) == 6
    # without latency, FLOPs or parameters neither Pareto fronts nor hypervolume can be drawn
    bare = make_sweep().drop(columns=["latency_ms", "flops", "params"])
    write_report(bare, {**SETTINGS, "constraint": None}, out)
    assert check_plots_referenced(out) == {"best_so_far.png", "regret.png", "regret_time.png"}
    text = out.read_text(encoding="utf-8")
    for skipped in ("pareto_flops", "pareto_latency_ms", "hypervolume"):
        assert f"<li><code>{skipped}</code>" in text
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_report_regret_against_the_benchmark_table(tmp_path, nb201_table):
    settings = {**SETTINGS, "config": {"benchmark": "nb201", "table": str(nb201_table),
                                       "accuracy_column": "cifar10_test_acc", "latency_column": "lat_raspi4_ms",
                                       "max_latency": 20.0}}
    table = pd.read_parquet(nb201_table)
    optimum = table.loc[table["lat_raspi4_ms"] <= 20.0, "cifar10_test_acc"].max()
    out = write_report(make_sweep(), settings, tmp_path / "r.html")
    assert f"optimum {optimum:g} (the best feasible value of the objective" in out.read_text(encoding="utf-8")
    assert "regret.png" in check_plots_referenced(out)


def test_report_minimised_metric_and_single_seed(tmp_path):
    df = make_sweep()
    df = df[df.seed == 0].rename(columns={"accuracy": "error"}).assign(error=lambda d: 100 - d["error"])
    out = write_report(df, {"metric": "error", "mode": "min"}, tmp_path / "r.html")
    assert check_plots_referenced(out) >= {"best_so_far.png", "hypervolume.png"}


def test_report_without_feasible_trials_draws_nothing(tmp_path):
    df = make_sweep().assign(feasible=False)
    out = write_report(df, SETTINGS, tmp_path / "r.html")
    assert check_plots_referenced(out) == set()
    proposals = {row[0]: row[1:] for row in parse(out).table("Proposals per searcher")[1:]}
    assert proposals["cds"] == ["2", "24", "0", "24", "0"]
    text = out.read_text(encoding="utf-8")
    for skipped in ("pareto_flops", "pareto_latency_ms", "best_so_far", "regret", "hypervolume"):
        assert f"<li><code>{skipped}</code>" in text


def test_report_bad_input_writes_nothing(tmp_path):
    out = tmp_path / "report.html"
    with pytest.raises(UserError, match="no trials"):
        write_report(make_sweep().iloc[:0], SETTINGS, out)
    with pytest.raises(UserError, match="settings.mode.*allowed values"):
        write_report(make_sweep(), {**SETTINGS, "mode": "maximise"}, out)
    with pytest.raises(UserError, match=r"lack columns \['order'\]"):
        write_report(make_sweep().drop(columns="order"), SETTINGS, out)
    with pytest.raises(UserError, match="is a directory"):
        write_report(make_sweep(), SETTINGS, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_report_command_errors_on_missing_or_empty_dir(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "missing" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(empty)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert list(empty.iterdir()) == []


def test_report_command_reads_trials_parquet(tmp_path, capsys):
    from analysis.results import write_trials

    write_trials(make_sweep(), tmp_path / "trials.parquet", SETTINGS)
    assert main(["report", str(tmp_path), "--top-k", "3"]) == 0
    out = Path(capsys.readouterr().out.strip())
    assert out == tmp_path / "report.html"
    assert len(check_plots_referenced(out)) == 6
    assert len(parse(out).table("Best architectures found")) == 1 + 3  # header + top 3 architectures
    custom = tmp_path / "elsewhere" / "sweep.html"
    assert main(["report", str(tmp_path), "--out", str(custom)]) == 0
    assert Path(capsys.readouterr().out.strip()) == custom and (custom.parent / "sweep_plots").is_dir()
    assert main(["report", str(tmp_path), "--top-k", "0"]) == 2
    assert "--top-k" in capsys.readouterr().err


def test_report_of_an_unfinished_sweep_reads_tune_results(tmp_path, nb201_table, capsys):
    """A sweep whose trials.parquet is not written yet is read from Tune's experiments, to the same report."""
    sweep = tmp_path / "sweep"
    args = ["sweep", "--table", str(nb201_table), "--accuracy-column", "cifar10_test_acc",
            "--latency-column", "lat_raspi4_ms", "--max-latency", "20", "--searchers", "random,optuna",
            "--budget", "4", "--seeds", "1", "--max-concurrent-trials", "2", "--out", str(sweep)]
    assert main(args) == 0
    assert main(["report", str(sweep), "--out", str(tmp_path / "from_parquet.html")]) == 0
    (sweep / "trials.parquet").unlink()
    assert main(["report", str(sweep), "--out", str(tmp_path / "from_tune.html")]) == 0
    capsys.readouterr()
    parsed = [parse(tmp_path / name) for name in ("from_parquet.html", "from_tune.html")]
    assert parsed[0].tables == parsed[1].tables and len(parsed[0].table("Best architectures found")) > 1
    assert check_plots_referenced(tmp_path / "from_tune.html") >= {"pareto_latency_ms.png", "best_so_far.png"}


def _text(page: str) -> str:
    import html
    import re

    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


@pytest.mark.parametrize("std", [1.0, 0.5, 0.05])
def test_the_report_says_which_searchers_bests_are_within_the_score_noise(tmp_path, std):
    df = make_sweep()
    bests = df[df["feasible"]].groupby("searcher")["accuracy"].max().sort_values(ascending=False)
    noise = {"std": std, "draws": 5, "calibration_images": 32, "val_images": 32, "mean": 90.0}
    text = _text(write_report(df, SETTINGS, tmp_path / "r.html", noise=noise).read_text())
    gaps = bests.iloc[0] - bests  # the bests span 1.52: none, some or all of them within twice the noise
    tied, behind = list(gaps[gaps <= 2 * std].index), list(gaps[gaps > 2 * std].index)
    assert f"span {gaps.max():.4f};" in text
    if not behind:
        assert "all within twice the score noise of the best: this sweep cannot tell its searchers apart" in text
    elif len(tied) == 1:
        assert f"the best, {tied[0]}, is ahead of every other by more than twice the score noise" in text
    else:
        assert (f"within twice the score noise of the best: {', '.join(tied)} (this sweep cannot tell these "
                f"apart); behind by more than that: {', '.join(behind)}") in text
    for name, value in bests.items():
        assert f"{name}: {value:.4f}" in text


def test_a_supernet_sweeps_report_says_how_to_measure_its_ranking_when_nobody_has(tmp_path):
    text = _text(write_report(make_sweep(), {**SETTINGS, "benchmark": "supernet"}, tmp_path / "r.html").read_text())
    assert "How far the ranking holds Not measured for this sweep: python -m raynas rank-check SWEEP_DIR" in text
    tabular = _text(write_report(make_sweep(), SETTINGS, tmp_path / "t.html").read_text())
    assert "How far the ranking holds" not in tabular  # no weights, nothing to fine-tune


def _shipped(tmp_path: Path) -> dict:
    """A fine-tuned model's metrics.json as finetune writes it, with a 2-row strip of examples."""
    from PIL import Image

    strip = tmp_path / "examples.png"
    Image.fromarray(np.arange(20 * 64 * 3, dtype=np.uint8).reshape(20, 64, 3)).save(strip)
    latency = {"latency_ms": 7.0, "latency_device": "x86_64|cpu", "latency_remote": False}
    return {"arch_id": "abc", "test_miou": 0.371, "test_miou_torch": 0.3709, "val_miou": 0.486,
            "val_miou_torch": 0.4861, "inherited_miou": 0.43, "flops": 9e8, "params": 2e6, "resolution": 512,
            "epochs": 4, "from_scratch": False, "scored_by": "ONNX Runtime on model.onnx",
            "latency": latency | {"resolution": [256, 256]},
            "latency_trained_size": latency | {"resolution": [192, 256], "latency_ms": 5.0},
            "per_class_iou": {"sky": 0.9, "road": 0.8}, "test_per_class_iou": {"sky": 0.85, "road": None},
            "files": {"onnx": "m.onnx", "weights": "m.pt", "examples": str(strip)}}


def test_the_model_section_shows_what_the_shipped_model_sees_and_its_per_class_iou(tmp_path):
    model = _shipped(tmp_path)
    out = write_report(make_sweep(), SETTINGS, tmp_path / "r.html", models=[model])
    page = out.read_text()
    end = page.index("<p>Sweep <code>")  # the model section comes first
    section = _text(page[page.index("The model to ship"):end])
    assert "0.3710 PyTorch 0.3709" in section and "0.4860 PyTorch 0.4861" in section
    assert "7.00 ms at 256×256 (deployment size" in section and "5.00 ms at 192×256 (trained size" in section
    assert page.index('id="plot-examples_abc"') < end and page.index('id="plot-per_class_abc"') < end
    assert (plots_dir_for(out) / "examples_abc.png").read_bytes() == Path(model["files"]["examples"]).read_bytes()
    assert check_plots_referenced(out) >= {"examples_abc.png", "per_class_abc.png"}
    added = ("test_miou_torch", "val_miou_torch", "latency_trained_size", "scored_by")  # absent before 2026-12-07
    old = {k: v for k, v in model.items() if k not in added} | {"files": {"onnx": "m.onnx", "weights": "m.pt"}}
    assert "The model to ship" in write_report(make_sweep(), SETTINGS, tmp_path / "old.html", models=[old]).read_text()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
# appended to a copy of the page: once loaded, the browser writes what it decoded of every image into the DOM
PROBE = """<script>window.addEventListener("load", () => document.body.setAttribute("data-probe", JSON.stringify(
  [...document.images].map(i => ({figure: i.closest("figure")?.id, width: i.naturalWidth, height: i.naturalHeight,
                                  shown: i.getBoundingClientRect().width}))))); </script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (Debian's package chromium; `make test` installs it "
                                             "where it runs as root with apt)")
def test_the_report_renders_in_headless_chromium_with_every_image_decoded(tmp_path):
    import html
    import json
    import re
    import subprocess

    model = _shipped(tmp_path)
    out = write_report(make_sweep(), SETTINGS, tmp_path / "r.html", models=[model])
    probe = out.with_name("probe.html")
    probe.write_text(out.read_text().replace("</body>", PROBE + "</body>"))
    dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                          "--disable-background-networking", "--disable-component-update", "--disable-sync",
                          f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000",
                          "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=180)
    found = re.search(r'data-probe="([^"]*)"', dom.stdout)
    assert found, dom.stderr[-2000:]
    images = {i["figure"]: i for i in json.loads(html.unescape(found.group(1)))}
    assert len(images) == len(check_plots_referenced(out)) >= 7  # every plot, the model's two included
    assert all(i["width"] > 0 and i["height"] > 0 and i["shown"] > 0 for i in images.values())
    assert (images["plot-examples_abc"]["width"], images["plot-examples_abc"]["height"]) == (64, 20)
