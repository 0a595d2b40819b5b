"""The README results block keeps the rows that the bench folders given do not hold."""

from __future__ import annotations

from pathlib import Path

import pytest

from otm_flower.results import write_result
from simulations.bench import main
from simulations.benchmark.readme_rows import parse_block
from simulations.readme_results import END, START
from tests.test_benchmark import make_result


def _folder(root: Path, name: str, results: list[dict]) -> Path:
    out = root / name
    for i, result in enumerate(results):
        write_result(result, out / "runs" / f"r{i}.json")
    return out


def _readme(tmp_path: Path) -> Path:
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\n{START}\n{END}\n\ntail\n", encoding="utf-8")
    return readme


def _rows(readme: Path) -> dict[tuple[str, str], dict[str, str]]:
    text = readme.read_text(encoding="utf-8")
    return parse_block(text[text.index(START) : text.index(END)]).rows


def _clustering(tmp_path: Path) -> Path:
    return _folder(
        tmp_path,
        "clustering",
        [
            make_result("otm", 0, [0.6, 0.6], regime="unaligned", dataset="orl"),
            make_result("local", 0, [0.5, 0.5], regime="unaligned", dataset="orl"),
            make_result("otm", 0, [0.7, 0.7], regime="unaligned", dataset="cub"),
        ],
    )


def _classification(tmp_path: Path, score: float) -> Path:
    return _folder(
        tmp_path,
        f"classification-{score}",
        [
            make_result(
                m,
                0,
                [score] * 2,
                task="classification",
                regime="classification",
                dataset="orl",
            )
            for m in ("otm", "local", "fedavg")
        ],
    )


def test_a_new_regime_joins_the_rows_of_the_earlier_command(tmp_path: Path) -> None:
    readme = _readme(tmp_path)
    first = _clustering(tmp_path)
    assert main(["--readme", str(first), "--readme-file", str(readme)]) == 0
    before = _rows(readme)
    assert set(before) == {("cub", "unaligned"), ("orl", "unaligned")}

    second = _classification(tmp_path, 0.8)
    assert main(["--readme", str(second), "--readme-file", str(readme)]) == 0
    after = _rows(readme)
    assert list(after) == [
        ("cub", "unaligned"),
        ("orl", "unaligned"),
        ("orl", "classification"),
    ]
    # The kept rows are the earlier ones, cell for cell (the new fedavg column: -).
    for key, cells in before.items():
        assert {c: after[key][c] for c in cells} == cells
        assert after[key]["fedavg"] == "-"
    assert after[("orl", "classification")]["score"] == "accuracy"
    assert after[("orl", "classification")]["otm"] == "90.0"  # accuracy = ACC + 0.1
    # Both commands are named, each with its own note.
    words = " ".join(readme.read_text(encoding="utf-8").split())
    assert words.count("Generated ") == 2
    assert str(first) in words and str(second) in words
    assert "kept from the generations below" in words
    assert readme.read_text(encoding="utf-8").endswith(f"{END}\n\ntail\n")


def test_rows_the_folders_hold_are_replaced_and_their_note_dropped(
    tmp_path: Path,
) -> None:
    readme = _readme(tmp_path)
    assert (
        main(
            [
                "--readme",
                str(_classification(tmp_path, 0.5)),
                "--readme-file",
                str(readme),
            ]
        )
        == 0
    )
    newer = _classification(tmp_path, 0.7)
    assert main(["--readme", str(newer), "--readme-file", str(readme)]) == 0
    rows = _rows(readme)
    assert list(rows) == [("orl", "classification")]
    assert rows[("orl", "classification")]["otm"] == "80.0"
    words = " ".join(readme.read_text(encoding="utf-8").split())
    assert words.count("Generated ") == 1 and "kept from" not in words


def test_an_untagged_block_keeps_its_note_for_its_rows(tmp_path: Path) -> None:
    """A block written without the hidden rows line: its note stays while any
    of its rows does."""
    readme = tmp_path / "README.md"
    readme.write_text(
        "\n".join(
            [
                START,
                "Generated long ago by an older command.",
                "",
                "| data set | regime | score | otm | local |",
                "|---|---|---|---|---|",
                "| bdgp | anchored | acc | 56.0 ± 7.9 | 55.1 ± 8.2 |",
                END,
            ]
        ),
        encoding="utf-8",
    )
    assert (
        main(["--readme", str(_clustering(tmp_path)), "--readme-file", str(readme)])
        == 0
    )
    rows = _rows(readme)
    assert rows[("bdgp", "anchored")]["otm"] == "56.0 ± 7.9"
    assert rows[("bdgp", "anchored")]["otm purity"] == "-"
    assert "Generated long ago by an older command." in readme.read_text()


def test_readme_without_markers_is_refused(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("no block", encoding="utf-8")
    with pytest.raises(ValueError, match="no <!-- results:start -->"):
        from simulations.readme_results import read_block

        read_block(readme)


def test_source_commit_names_the_code_and_says_when_it_is_edited(
    tmp_path: Path,
) -> None:
    import subprocess

    from simulations.readme_results import source_commit

    assert source_commit(tmp_path) is None  # not a git checkout
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / "otm_flower").mkdir()
    code = tmp_path / "otm_flower" / "m.py"
    code.write_text("x = 1\n")
    (tmp_path / "notes.md").write_text("n\n")
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "c"], check=True)
    head = subprocess.run(
        [*git, "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    (tmp_path / "notes.md").write_text("edited, not code\n")
    assert source_commit(tmp_path) == head
    code.write_text("x = 2\n")
    assert source_commit(tmp_path) == f"{head}+dirty"
