"""``otm-flower run`` rejects bad input before starting a simulation."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulations.cli import main


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--dataset", "no-such-set"], "unknown dataset"),
        (["run", "--set", "epochs=3"], "unknown run-config key 'epochs'"),
        (["run", "--set", "fgw-alpha=2"], "fgw-alpha must be in [0, 1]"),
        (["run", "--set", "latent-dim"], "KEY=VALUE"),
    ],
)
def test_bad_arguments_exit_2_with_a_named_problem(argv, message, capsys) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_missing_and_corrupt_files_are_named(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "absent.mat"
    assert main(["run", "--dataset", str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err
    corrupt = tmp_path / "corrupt.mat"
    corrupt.write_bytes(b"not a mat file at all")
    assert main(["run", "--dataset", str(corrupt)]) == 2
    assert "corrupt.mat" in capsys.readouterr().err
