"""``data.source: csv:FILE.csv``: images listed in a CSV file with their class (and optionally their split).

Many line data sets keep a label table instead of class folders. The CSV needs a header row naming a path
column (``path``, ``file``, ``filename``, ``image``, ``image_path``, ``img``, ``image_id``) and a label column
(``label``, ``class``, ``category``, ``defect``, ``target``); a ``split`` (or ``subset``) column with values
such as train / val / test keeps the table's own split (``data.split_folders``). Paths are relative to the
CSV's folder (or its ``images/`` folder), or absolute; a bare file name is also found anywhere below the CSV's
folder when it is unique. One image with two different labels is a conflict kdefect cannot classify, and an
error that names it. TF-free.
"""

from __future__ import annotations

import csv
from pathlib import Path

from kdefect.errors import DataError

from .split import SPLIT_FOLDERS
from .voc import ImageLookup

PATH_COLUMNS = ("path", "file", "filename", "file_name", "image", "image_path", "img", "image_id")
LABEL_COLUMNS = ("label", "class", "category", "defect", "target")
SPLIT_COLUMNS = ("split", "subset")


def _column(header: list[str], names: tuple[str, ...]) -> int | None:
    low = [h.strip().lower() for h in header]
    return next((low.index(n) for n in names if n in low), None)


def read_csv_labels(path: Path) -> tuple[list[tuple[str, str, str]], list[tuple[str, str]]]:
    """([(image path, class, split or ''), ...], bad rows with reasons) of a label table."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # a BOM from spreadsheet exports is not part of the header
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"label table '{path}' cannot be read ({exc}).") from None
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    rows = list(csv.reader(text.splitlines(), dialect))
    if not rows:
        raise DataError(f"label table '{path}' is empty.")
    header = rows[0]
    pi, li, si = _column(header, PATH_COLUMNS), _column(header, LABEL_COLUMNS), _column(header, SPLIT_COLUMNS)
    if pi is None or li is None:
        raise DataError(f"label table '{path}' needs a header row with a path column ({', '.join(PATH_COLUMNS)}) "
                        f"and a label column ({', '.join(LABEL_COLUMNS)}); its header is {header}.")
    base = path.parent
    lookup = ImageLookup(base)
    out, bad, seen = [], [], {}
    for n, row in enumerate(rows[1:], 2):
        if not any(c.strip() for c in row):
            continue
        where = f"label table '{path}' line {n}"
        if len(row) <= max(pi, li, si if si is not None else 0):
            bad.append((where, f"{where}: has {len(row)} fields, fewer than the header's {len(header)}"))
            continue
        name, label = row[pi].strip(), row[li].strip()
        split = row[si].strip().lower() if si is not None else ""
        if not name or not label:
            bad.append((where, f"{where}: the path or the label is empty"))
            continue
        if split and split not in SPLIT_FOLDERS:
            raise DataError(f"{where}: split '{row[si]}' is not one of {', '.join(sorted(SPLIT_FOLDERS))}.")
        p = Path(name).expanduser()
        found = next((c for c in ([p] if p.is_absolute() else [base / p, base / "images" / p]) if c.is_file()), None)
        try:
            found = found or lookup.find([p.name], [], where)
        except DataError as exc:
            bad.append((where, str(exc)))
            continue
        if found is None:
            bad.append((str(base / p), f"{where}: image '{name}' not found beside the table or in images/"))
            continue
        key = str(found.resolve())
        if key in seen:
            if seen[key] != label:
                raise DataError(f"{where}: '{name}' is labelled both '{seen[key]}' and '{label}'. kdefect gives each "
                                "image one class: keep one row per image (for several defects in one image, use "
                                "boxes and task=detect).")
            continue
        seen[key] = label
        out.append((str(found), label, SPLIT_FOLDERS.get(split, "")))
    return out, bad
