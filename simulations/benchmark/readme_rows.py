"""Rows and notes of an existing README results block, to keep beside new ones.

A block regenerated from some bench folders keeps the rows of the block it
replaces whose (data set, regime) those folders do not hold, and the notes that
say where the kept rows came from. Each note of a generated block is preceded by
a hidden ``<!-- rows: dataset/regime, ... -->`` line naming the rows it made, so
a note is dropped once none of its rows is left; a note without that line (a
block written before it existed) stands for every row of its block.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

#: A note's hidden line naming the rows it made.
_ROWS_TAG = re.compile(r"^<!-- rows: (.*) -->$")

#: (data set label, regime) of a table row.
RowKey = tuple[str, str]


@dataclass
class Block:
    """The parts of a README results block.

    Attributes
    ----------
    notes : list of (set of RowKey or None, str)
        Each note's text with the rows it made (``None``: not recorded).
    header : list of str
        The table's column names (empty when the block holds no table).
    rows : dict
        ``{(data set, regime): {column: cell}}``, in the block's order.
    """

    notes: list[tuple[set[RowKey] | None, str]] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    rows: dict[RowKey, dict[str, str]] = field(default_factory=dict)


def rows_tag(keys: Iterable[RowKey]) -> str:
    """The hidden line that names the rows of a note."""
    return f"<!-- rows: {', '.join(f'{d}/{r}' for d, r in sorted(set(keys)))} -->"


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _parse_tag(line: str) -> set[RowKey] | None:
    match = _ROWS_TAG.match(line.strip())
    if match is None:
        return None
    pairs = (item.strip().split("/", 1) for item in match.group(1).split(","))
    return {(p[0], p[1]) for p in pairs if len(p) == 2}


def _parse_table(lines: Sequence[str], block: Block) -> None:
    if not lines:
        return
    block.header = _cells(lines[0])
    for line in lines[2:]:
        cells = dict(zip(block.header, _cells(line), strict=False))
        key = (cells.get("data set", ""), cells.get("regime", ""))
        block.rows[key] = cells


def _parse_notes(lines: Sequence[str], block: Block) -> None:
    tag: set[RowKey] | None = None
    paragraph: list[str] = []
    for line in [*lines, ""]:
        if line.startswith("<!-- rows:"):
            tag = _parse_tag(line)
        elif line.startswith("<!--"):
            continue
        elif line.strip():
            paragraph.append(line)
        elif paragraph:
            block.notes.append((tag, "\n".join(paragraph)))
            tag, paragraph = None, []


def parse_block(text: str) -> Block:
    """The notes and table rows of a results block's text (markers optional)."""
    lines = [line.rstrip() for line in text.splitlines()]
    lines = [line for line in lines if not line.startswith("<!-- results:")]
    table = [i for i, line in enumerate(lines) if line.startswith("|")]
    block = Block()
    _parse_notes(lines[: table[0]] if table else lines, block)
    _parse_table([lines[i] for i in table], block)
    return block


def kept(block: Block, new_keys: Iterable[RowKey]) -> Block:
    """The part of ``block`` the new rows leave: its rows of other (data set,
    regime) and the notes of those rows (an untagged note: of all its rows)."""
    new = set(new_keys)
    rows = {k: v for k, v in block.rows.items() if k not in new}
    notes = [
        ((set(block.rows) if tag is None else tag) & set(rows), text)
        for tag, text in block.notes
    ]
    return Block(
        notes=[(tag, text) for tag, text in notes if tag],
        header=block.header,
        rows=rows,
    )
