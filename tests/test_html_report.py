"""Self-contained HTML reports of a run and a benchmark, loaded in headless chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from otm_flower.results import build_result, write_result
from simulations.benchmark import BenchRun, result_path
from simulations.html_report import write_bench_report, write_run_outputs

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def make_result(method: str, seed: int, acc: float, regime: str) -> dict[str, Any]:
    """A two-agent, three-round result with purity and (for OTM) agreement."""
    task = "classification" if regime == "classification" else "clustering"
    config = {
        "dataset": "handwritten",
        "method": method,
        "task": task,
        "seed": seed,
        "num-server-rounds": 3,
        "weight-mix": 0.1 if method == "otm" else 0.0,
    }
    metrics = {
        rnd: {
            agent: {
                "acc": acc * rnd / 3,
                "nmi": acc - 0.1,
                "ari": acc - 0.2,
                "purity": acc + 0.05,
                "accuracy": acc + 0.1,
            }
            for agent in (0, 1)
        }
        for rnd in (1, 2, 3)
    }
    agreement = [{"round": r, "mean": 0.1 * r} for r in (2, 3)]
    extra = {"regime": regime, "coupling_agreement": 0.3 if method == "otm" else None}
    if method == "otm":
        extra["coupling_agreement_history"] = agreement
    return build_result(
        config, metrics, wall_s=1.5, bytes_up=10, bytes_down=20, extra=extra
    )


class _Tables(HTMLParser):
    """Collects every table's cells (one list of row texts per table) and images."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.images: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images.append(dict(attrs).get("src") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def parse(text: str) -> _Tables:
    parser = _Tables()
    parser.feed(text)
    return parser


def browser_dom(path: Path, tmp_path: Path) -> str:
    """The DOM headless chromium builds from ``path`` (network and sync off)."""
    if CHROMIUM is None:
        pytest.skip("needs chromium (apt-get install -y chromium) to load the report")
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
        "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
        "--dump-dom", path.resolve().as_uri(),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def assert_self_contained(text: str) -> None:
    """No external asset: every src is a data URI and nothing is fetched."""
    sources = re.findall(r'(?:src|href)="([^"]*)"', text)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<script" not in text and "<link" not in text


def test_run_outputs_and_report_in_a_browser(tmp_path: Path) -> None:
    result = make_result("otm", 0, 0.6, "unaligned")
    paths = write_run_outputs(result, tmp_path / "run")
    assert sorted(p.name for p in paths.values()) == [
        "history.png",
        "report.html",
        "result.json",
    ]
    text = paths["report"].read_text()
    assert_self_contained(text)
    dom = parse(browser_dom(paths["report"], tmp_path))
    headers = [table[0] for table in dom.tables]
    assert ["id", "modality", "n_train", "n_test", "acc", "nmi", "ari", "purity"] == (
        headers[1][:8]
    )
    agents = dom.tables[1]
    assert agents[-1][0] == "mean" and agents[-1][7] == "0.6500"  # mean purity
    history = dom.tables[2]
    assert [row[0] for row in history[1:]] == ["1", "2", "3"]
    config = dict(row for row in dom.tables[-1][1:])
    assert config["weight-mix"] == "0.1000" and config["dataset"] == "handwritten"
    assert len(dom.images) == 1  # the per-round plot, embedded


def _bench_folder(tmp_path: Path) -> Path:
    out = tmp_path / "bench"
    for method, acc in (("otm", 0.7), ("local", 0.6), ("oracle", 0.9)):
        for seed in (0, 1):
            run = BenchRun("handwritten", method, "anchored", seed)
            write_result(make_result(method, seed, acc + 0.01 * seed, "anchored"),
                         result_path(out, run))  # fmt: skip
    return out


def test_bench_report_in_a_browser(tmp_path: Path) -> None:
    out = _bench_folder(tmp_path)
    (out / "embeddings").mkdir()
    shutil.copy(write_run_outputs(make_result("otm", 0, 0.6, "anchored"),
                                  tmp_path / "r")["history"],
                out / "embeddings" / "x-after.png")  # fmt: skip
    report = write_bench_report(out)
    assert report == out / "report.html" and (out / "rounds.png").is_file()
    assert_self_contained(report.read_text())
    dom = parse(browser_dom(report, tmp_path))
    summary, gains = dom.tables[0], dom.tables[1]
    assert summary[0][:7] == ["method", "seeds", "ACC", "NMI", "ARI", "purity",
                              "accuracy"]  # fmt: skip
    rows = {row[0]: row for row in summary[1:]}
    assert list(rows) == ["otm", "local", "oracle"]
    assert rows["otm"][2] == "0.705 ± 0.007" and rows["otm"][5] == "0.755 ± 0.007"
    assert gains[1][:5] == ["handwritten", "anchored", "acc", "0.705", "+0.100"]
    assert gains[1][-1] == "33.3%"  # (0.705 - 0.605) / (0.905 - 0.605)
    varying = dom.tables[-1]
    assert varying[0] == ["method / regime", "method", "weight-mix"]
    assert len(dom.images) == 2  # per-round plot and the embedding
