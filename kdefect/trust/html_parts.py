"""Small HTML building blocks of the report (shared by ``report`` and ``report_explain``)."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any


def img(path: Path | bytes, alt: str) -> str:
    data = path if isinstance(path, bytes) else Path(path).read_bytes()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        return f"{v:.4f}" if isinstance(v, float) else html.escape(str(v))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"
