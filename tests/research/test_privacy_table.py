"""The privacy table from run files: cells, shares of the gain, the README block."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from research.privacy_table import MARKERS, load_runs, main, table_lines


def _run(
    folder: Path, name: str, method: str, acc: float, seed: int = 0, **config: object
) -> None:
    settings = {
        "dp-clip": 0.0,
        "dp-noise": 0.0,
        "term-guard": True,
        "anchor-rate": 0.05,
    }
    settings |= {"mix-batch-size": 256, **config}
    privacy = {"epsilon_max": 8.0} if float(settings["dp-clip"]) > 0 else None
    result = {
        "method": method,
        "dataset": "handwritten",
        "rounds": 20,
        "seed": seed,
        "config": settings,
        "history": [{"acc": 0.1}, {"acc": acc}],
        "privacy": privacy,
    }
    (folder / f"{name}.json").write_text(json.dumps(result))


def _sweep(folder: Path) -> None:
    for seed, shift in enumerate((0.0, 0.02)):
        _run(folder, f"local-{seed}", "local", 0.70 + shift, seed)
        _run(folder, f"otm-{seed}", "otm", 0.80 + shift, seed)
        _run(
            folder,
            f"dp-{seed}",
            "otm",
            0.75 + shift,
            seed,
            **{"dp-clip": 3, "dp-noise": 2.5},
        )
        _run(folder, f"off-{seed}", "otm", 0.60 + shift, seed, **{"term-guard": False})
        _run(
            folder, f"offdp-{seed}", "otm", 0.65 + shift, seed,
            **{"term-guard": False, "dp-clip": 3, "dp-noise": 2.5},
        )  # fmt: skip
    (folder / "summary.json").write_text("[]")


def test_rows_and_shares_of_the_gain(tmp_path: Path) -> None:
    _sweep(tmp_path)
    rows = [line.split(" | ") for line in table_lines(load_runs([tmp_path]))[2:]]
    assert [r[0].strip("| ") for r in rows] == ["local", "otm", "otm", "otm", "otm"]
    assert [r[1] for r in rows] == ["-", "on", "on", "off", "off"]
    local, guarded, private, _, private_off = rows
    assert local[5] == "0.710 ± 0.010" and local[6] == "2"
    assert guarded[4] == "none" and guarded[7].strip(" |") == ""
    # (0.76 - 0.71) / (0.81 - 0.71): half of the non-private gain kept
    assert private[3] == "2.5000" and private[4] == "8.00"
    assert private[7].strip(" |") == "+0.50"
    # the guard-off reference loses to local: no gain to keep a share of
    assert private_off[7].startswith("n/a (no non-private gain: -10.0 points)")


def test_readme_block_replaces_only_the_marked_lines(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    _sweep(runs)
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{MARKERS[0]}\nold table\n{MARKERS[1]}\nafter\n")
    assert main([str(runs), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("\nafter\n")
    assert "old table" not in text and "| local | - | - |" in text
    assert "python -m research.privacy_table" in text


def test_bad_files_and_missing_markers_are_named(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="broken.json is not a run result"):
        main([str(tmp_path)])
    (tmp_path / "broken.json").unlink()
    with pytest.raises(ValueError, match="no run results"):
        main([str(tmp_path)])
    _sweep(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text("no markers\n")
    with pytest.raises(ValueError, match="privacy:start"):
        main([str(tmp_path), "--readme", str(readme)])


def test_the_share_is_taken_on_the_seeds_a_cell_shares(tmp_path: Path) -> None:
    _sweep(tmp_path)
    _run(tmp_path, "eps16", "otm", 0.75, **{"dp-clip": 3, "dp-noise": 1.5})  # seed 0
    rows = [line.split(" | ") for line in table_lines(load_runs([tmp_path]))[2:]]
    (only_seed0,) = [r for r in rows if r[3] == "1.5000"]
    # seed 0 alone: (0.75 - 0.70) / (0.80 - 0.70), not against the 2-seed means
    assert only_seed0[6] == "1" and only_seed0[7].strip(" |") == "+0.50"
