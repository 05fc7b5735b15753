"""Classification labels from a CSV table: columns found by name, paths resolved, split kept, conflicts refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kdefect.config import DataConfig
from kdefect.data.sources import index_dataset, resolve_source
from kdefect.data.split import split_index
from kdefect.errors import DataError


def _img(path: Path, v: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((10, 12), v, np.uint8)).save(path)


@pytest.fixture
def table(tmp_path):
    root = tmp_path / "line3"
    rows = ["Image;Defect;Split"]  # another delimiter, other column names, a BOM: as a spreadsheet writes it
    for i in range(12):
        label, split = ("ok" if i % 3 else "crack"), ("test" if i >= 9 else "train")
        where = ["images/", "", "shots/day2/"][i % 3]  # in images/, beside the table, or found by a unique name
        _img(root / where / f"p{i}.png", 10 * i)
        rows.append(f"{'' if where == 'shots/day2/' else where}p{i}.png;{label};{split}")
    (root / "labels.csv").write_text("\ufeff" + "\n".join(rows) + "\n", encoding="utf-8")
    return root / "labels.csv"


def test_a_label_table_indexes_and_keeps_its_split(table):
    cfg = DataConfig(source=str(table))
    assert resolve_source(cfg)[0] == "csv"
    idx = index_dataset(cfg)
    assert idx.classes == ["crack", "ok"] and len(idx) == 12
    assert dict(zip((Path(p).name for p in idx.paths), idx.labels.tolist()))["p3.png"] == 0
    split, value, _ = split_index(idx, cfg)
    assert value == "keep"
    assert sorted(Path(idx.paths[i]).name for i in split["test"]) == ["p10.png", "p11.png", "p9.png"]


def test_conflicts_missing_files_and_bad_headers(table, tmp_path):
    text = table.read_text(encoding="utf-8-sig")
    table.write_text(text + "missing.png;ok;train\n", encoding="utf-8")
    with pytest.raises(DataError, match="missing.png"):
        index_dataset(DataConfig(source=f"csv:{table}"))
    assert len(index_dataset(DataConfig(source=f"csv:{table}", on_bad_image="skip"))) == 12
    table.write_text(text + "p1.png;crack;train\n", encoding="utf-8")
    with pytest.raises(DataError, match="labelled both 'ok' and 'crack'"):
        index_dataset(DataConfig(source=f"csv:{table}"))
    table.write_text("name,kind\np1.png,ok\n", encoding="utf-8")
    with pytest.raises(DataError, match="needs a header row with a path column"):
        index_dataset(DataConfig(source=f"csv:{table}"))
    table.write_text("file,label,split\np1.png,ok,holdout\n", encoding="utf-8")
    with pytest.raises(DataError, match="split 'holdout' is not one of"):
        index_dataset(DataConfig(source=f"csv:{table}"))
    with pytest.raises(DataError, match="no boxes"):
        index_dataset(DataConfig(source=f"csv:{table}"), image_labels=False)


def test_a_table_of_missing_files_says_so(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("file,label\nnope.png,ok\n")
    with pytest.raises(DataError, match="nope.png.*line 2"):
        index_dataset(DataConfig(source=str(table)))
    with pytest.raises(DataError, match="lists no usable image"):
        index_dataset(DataConfig(source=str(table), on_bad_image="skip"))


def test_the_training_copy_is_kept_whatever_the_row_order(tmp_path):
    """A test row listed before an identical training row: dedupe keeps the training copy, not the first row."""
    from kdefect.data.profile import dedupe_index

    root = tmp_path / "t"
    rows = ["path,label,split", "dup_test.png,crack,test"]
    _img(root / "dup_test.png", 7)
    _img(root / "dup_train.png", 7)  # the same bytes
    for i in range(8):
        _img(root / f"q{i}.png", 20 + i)
        rows.append(f"q{i}.png,{'crack' if i % 2 else 'ok'},{'test' if i >= 6 else 'train'}")
    rows.append("dup_train.png,crack,train")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    idx, dropped = dedupe_index(index_dataset(DataConfig(source=str(root / "labels.csv"))), "drop")
    assert [Path(d["path"]).name for d in dropped] == ["dup_test.png"]
    assert "dup_train.png" in {Path(p).name for p in idx.paths}
