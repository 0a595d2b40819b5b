"""``otm-flower predict``: a party's trained model applied to the rows of a file.

Reads a data file in any format :func:`otm_flower.party_data.read_party_file`
reads, checks its feature columns against the ones the model was trained on,
and writes one CSV row per input row: the record key (``--key-column``) or the
row index (``row``), the predicted ``cluster`` (clustering) or ``class``
(classification), and with ``--codes`` the latent code (``code-0``, ...).
When ``--label-column`` names the file's labels, the command also prints the
test score the run reports for the party (clustering accuracy after the best
cluster-to-class matching, or classification accuracy).

Run ``otm-flower predict --help``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from otm_flower.party_data import PartyDataError, PartyTable, read_party_file

__all__ = ["PredictError", "build_parser", "main", "predictions"]


class PredictError(ValueError):
    """Bad input to ``otm-flower predict`` (model folder, data file, columns)."""


def build_parser() -> argparse.ArgumentParser:
    """The ``otm-flower predict`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="otm-flower predict",
        description="Apply a party's trained model (its model-dir) to a data file.",
    )
    parser.add_argument(
        "--model", required=True, help="the party's model-dir (its trained model)"
    )
    parser.add_argument(
        "--data",
        required=True,
        help="rows to predict: .csv/.tsv/.txt, .parquet, .npy, .npz or .mat",
    )
    parser.add_argument(
        "--key-column",
        default=None,
        help="column holding the record keys; written as the first output column "
        "(default: the row index, as column 'row')",
    )
    parser.add_argument(
        "--label-column",
        default=None,
        help="column holding true labels: not a feature; prints the test score",
    )
    parser.add_argument(
        "--codes", action="store_true", help="also write the latent code columns"
    )
    parser.add_argument("--out", required=True, help="predictions CSV to write")
    return parser


def load_model(path: str | Path) -> Any:
    """The party model at ``path``; :class:`PredictError` when it cannot be read."""
    from otm_flower.party_model import load_party_model

    folder = Path(path).expanduser()
    if not folder.exists():
        raise PredictError(f"{folder}: model not found (no such file or folder)")
    try:
        return load_party_model(folder)
    except Exception as err:  # a damaged artifact fails in torch, json or zip
        raise PredictError(f"{folder}: cannot load the party model ({err})") from err


def read_rows(
    model: Any, data: str | Path, key_column: str | None, label_column: str | None
) -> PartyTable:
    """The file's rows with the model's feature columns, in the model's order.

    Raises
    ------
    PredictError
        When the file lacks some of the model's feature columns or has others.
    PartyDataError
        When the file cannot be read (see :func:`read_party_file`).
    """
    table = read_party_file(data, label_column=label_column, key_column=key_column)
    wanted = [str(name) for name in model.feature_names]
    have = table.feature_names
    missing = [c for c in wanted if c not in set(have)]
    extra = [c for c in have if c not in set(wanted)]
    if missing or extra:
        raise PredictError(_mismatch(table.source, len(wanted), missing, extra))
    if have == wanted:
        return table
    order = [have.index(c) for c in wanted]
    return PartyTable(
        features=table.features[:, order],
        feature_names=wanted,
        labels=table.labels,
        keys=table.keys,
        source=table.source,
    )


def _mismatch(source: Path, n_model: int, missing: list[str], extra: list[str]) -> str:
    """The error text for feature columns that differ from the model's."""
    parts = [f"{source}: feature columns do not match the model's {n_model}"]
    if missing:
        parts.append(f"{len(missing)} missing: {_names(missing)}")
    if extra:
        parts.append(
            f"{len(extra)} extra: {_names(extra)} "
            "(name a label or key column with --label-column / --key-column)"
        )
    return "; ".join(parts)


def _names(names: Sequence[str], show: int = 5) -> str:
    """Up to ``show`` quoted names, then how many more."""
    text = ", ".join(repr(n) for n in names[:show])
    return text + (f", ... ({len(names) - show} more)" if len(names) > show else "")


def predictions(
    model: Any, table: PartyTable, key_column: str | None = None, codes: bool = False
) -> pd.DataFrame:
    """One row per input row: key or ``row``, ``cluster`` or ``class``, codes.

    Parameters
    ----------
    model : PartyModel
        A loaded party model (:func:`otm_flower.party_model.load_party_model`);
        a classification model's class indices are written as its class values.
    table : PartyTable
        Rows with the model's feature columns, in the model's order.
    key_column : str, optional
        Name of the first column when the table has keys (default ``"key"``).
    codes : bool
        Also add the latent code columns ``code-0``, ``code-1``, ...
    """
    predicted = np.asarray(model.predict(table.features)).ravel()
    column = "class" if model.task == "classification" else "cluster"
    if column == "class" and model.classes is not None:
        predicted = np.asarray(model.classes)[predicted.astype(np.int64)]
    if table.keys is None:
        frame = pd.DataFrame({"row": np.arange(table.n_rows), column: predicted})
    else:
        frame = pd.DataFrame({key_column or "key": table.keys, column: predicted})
    if codes:
        z = np.asarray(model.embed(table.features), dtype=np.float64)
        for j in range(z.shape[1]):
            frame[f"code-{j}"] = z[:, j]
    return frame


def score(task: str, labels: np.ndarray, predicted: np.ndarray) -> tuple[str, float]:
    """The party's reported test score of ``predicted`` against ``labels``."""
    from otm_flower.metrics import clustering_accuracy

    if task == "classification":
        truth = np.asarray(labels).astype(str)
        return "accuracy", float(np.mean(truth == np.asarray(predicted).astype(str)))
    return "ACC", clustering_accuracy(labels, predicted)


def run(args: argparse.Namespace) -> str:
    """Predict, write the CSV and return the line to print."""
    model = load_model(args.model)
    table = read_rows(model, args.data, args.key_column, args.label_column)
    frame = predictions(model, table, args.key_column, codes=args.codes)
    out = Path(args.out).expanduser()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(out, index=False)
    except OSError as err:
        raise PredictError(f"{out}: cannot write the predictions ({err})") from err
    line = f"{table.n_rows} predictions ({frame.columns[1]}) written to {out}"
    if table.labels is not None:
        name, value = score(model.task, table.labels, frame.iloc[:, 1].to_numpy())
        line += f"; test {name} {value:.4f} against {args.label_column!r}"
        reported = model.metrics.get(name.lower())
        if reported is not None:
            line += f" (the run reported {reported:.4f})"
    return line


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``otm-flower predict``; exit status 2 on bad input."""
    args = build_parser().parse_args(None if argv is None else list(argv))
    try:
        line = run(args)
    except (PredictError, PartyDataError) as err:
        message = " ".join(str(err).split())  # one line
        print(f"otm-flower predict: error: {message}", file=sys.stderr)
        return 2
    print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
