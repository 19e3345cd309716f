# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""The one table writer: CSV, JSON, markdown and the terminal, for every result table of the package.

The evaluation callback, the benchmark runner and the demo all hand a :class:`pandas.DataFrame` to these
functions; numbers are formatted here only.
"""

import json
import math
import os
from collections.abc import Mapping
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

#: Digits after the decimal point of the numbers in markdown and terminal tables.
DIGITS = 4


def format_cell(value: Any, digits: int = DIGITS) -> str:
    """Format one table cell.

    Args:
        value: A number, a string or None.
        digits: Digits after the decimal point of floats.

    Returns:
        Floats with *digits* decimals ('' for NaN or None), integers and strings as they are.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ''
    if isinstance(value, float):
        return f'{value:.{digits}f}'
    return str(value)


def _is_numeric(column: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(column))


def markdown_table(
    frame: pd.DataFrame,
    digits: int = DIGITS,
    bold: pd.DataFrame | None = None,
    index: bool = True,
) -> str:
    """Render a table as GitHub markdown.

    Numeric columns are right-aligned.

    Args:
        frame: The table; its index becomes the first column when *index* is set.
        digits: Digits after the decimal point of floats.
        bold: Boolean frame of the same shape as *frame*: True cells are set in bold.
        index: Write the index as the first column (named after ``frame.index.name``).

    Returns:
        The markdown text, ending with a newline.
    """
    table = frame.reset_index() if index else frame
    bold_mask = None
    if bold is not None:
        bold_mask = bold.reindex_like(frame).fillna(False).astype(bool)
        if index:
            bold_mask = bold_mask.reset_index(drop=True)
            bold_mask.insert(0, '__index__', False)
    header = [str(c) for c in table.columns]
    align = ['---:' if _is_numeric(table[c]) else '---' for c in table.columns]
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '|'.join(align) + '|']
    for row_number, (_, row) in enumerate(table.iterrows()):
        cells = []
        for column_number, value in enumerate(row):
            cell = format_cell(value, digits)
            if (
                bold_mask is not None
                and cell
                and bool(bold_mask.iat[row_number, column_number])
            ):
                cell = f'**{cell}**'
            cells.append(cell)
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def print_table(
    frame: pd.DataFrame,
    title: str,
    digits: int = DIGITS,
    console: Console | None = None,
) -> None:
    """Print a table in the terminal.

    Args:
        frame: The table; its index is the first column.
        title: Title above the table.
        digits: Digits after the decimal point of floats.
        console: Where to print; a new :class:`rich.console.Console` on standard output by default.
    """
    table = Table(title=title)
    shown = frame.reset_index()
    for column in shown.columns:
        table.add_column(
            str(column), justify='right' if _is_numeric(shown[column]) else 'left'
        )
    for _, row in shown.iterrows():
        table.add_row(*(format_cell(value, digits) for value in row))
    (console or Console()).print(table)


def write_table(
    frame: pd.DataFrame,
    stem: str,
    metadata: Mapping[str, Any] | None = None,
    digits: int = DIGITS,
) -> list[str]:
    """Write a table as ``<stem>.csv``, ``<stem>.json`` and ``<stem>.md``.

    The CSV and JSON files keep full precision; the JSON file holds *metadata* and the rows as records.

    Args:
        frame: The table.
        stem: Path without extension; its folder is created.
        metadata: Extra JSON fields (e.g. stage and task).
        digits: Digits after the decimal point in the markdown file.

    Returns:
        The paths written.
    """
    os.makedirs(os.path.dirname(stem) or '.', exist_ok=True)
    paths = [f'{stem}.csv', f'{stem}.json', f'{stem}.md']
    frame.to_csv(paths[0])
    records = json.loads(frame.reset_index().to_json(orient='records'))
    with open(paths[1], 'w') as file:
        json.dump({**(metadata or {}), 'rows': records}, file, indent=2)
    with open(paths[2], 'w') as file:
        file.write(markdown_table(frame, digits))
    return paths
