"""A tiny document model rendered twice: to Markdown (images linked) and to one self-contained HTML file
(images embedded as base64 data URIs), so ``report.md`` and ``report.html`` always say the same thing.

Inline markup understood in text: ``**bold**`` and ```code```.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from typing import Union

__all__ = ["Block", "Bullets", "Code", "Heading", "Image", "Paragraph", "Table", "to_html", "to_markdown"]


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Paragraph:
    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    """``numeric`` marks right-aligned columns (by index)."""

    header: list[str]
    rows: list[list[str]]
    numeric: set[int] = field(default_factory=set)


@dataclass
class Image:
    """A figure: ``filename`` beside report.md, ``png`` its bytes (embedded in the HTML)."""

    filename: str
    png: bytes
    alt: str
    caption: str = ""


@dataclass
class Code:
    text: str
    lang: str = ""


Block = Union[Heading, Paragraph, Bullets, Table, Image, Code]


# --------------------------------------------------------------------------------------------------- markdown


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: list[Block]) -> str:
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"{'#' * b.level} {b.text}")
        elif isinstance(b, Paragraph):
            out.append(b.text)
        elif isinstance(b, Bullets):
            out.append("\n".join(f"- {item}" for item in b.items))
        elif isinstance(b, Table):
            lines = [
                "| " + " | ".join(_md_cell(h) for h in b.header) + " |",
                "|" + "|".join("---:" if i in b.numeric else "---" for i in range(len(b.header))) + "|",
            ]
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in b.rows]
            out.append("\n".join(lines))
        elif isinstance(b, Image):
            text = f"![{b.alt}]({b.filename})"
            out.append(text + (f"\n\n*{b.caption}*" if b.caption else ""))
        elif isinstance(b, Code):
            fence = "```"
            out.append(f"{fence}{b.lang}\n{b.text.rstrip()}\n{fence}")
        else:  # pragma: no cover - a new block type without a renderer is a bug
            raise TypeError(f"unknown block {type(b).__name__}")
    return "\n\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------------- HTML

CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
line-height:1.45;color:#1d1d1f}
h1{font-size:1.6em;border-bottom:2px solid #ddd;padding-bottom:.2em}h2{font-size:1.3em;margin-top:1.8em;
border-bottom:1px solid #eee}h3{font-size:1.1em}
table{border-collapse:collapse;margin:.8em 0;font-size:.88em}th,td{border:1px solid #d0d7de;padding:.25em .55em}
th{background:#f3f5f7;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr:nth-child(even) td{background:#fafbfc}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}figcaption{font-size:.9em;color:#555}
pre{background:#f6f8fa;padding:.7em;overflow-x:auto;font-size:.85em}code{background:#f6f8fa;padding:0 .2em}
pre code{padding:0}
""".strip()

_BOLD = re.compile(r"\*\*(.+?)\*\*")
_CODE = re.compile(r"`([^`]+)`")


def _inline(text: str) -> str:
    s = html.escape(str(text), quote=False)
    s = _CODE.sub(lambda m: f"<code>{m.group(1)}</code>", s)
    return _BOLD.sub(lambda m: f"<strong>{m.group(1)}</strong>", s)


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def to_html(blocks: list[Block], title: str) -> str:
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{CSS}</style>",
        "</head>",
        "<body>",
    ]
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"<h{b.level}>{_inline(b.text)}</h{b.level}>")
        elif isinstance(b, Paragraph):
            out.append(f"<p>{_inline(b.text)}</p>")
        elif isinstance(b, Bullets):
            out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in b.items) + "</ul>")
        elif isinstance(b, Table):
            head = "".join(f"<th>{_inline(h)}</th>" for h in b.header)
            body = "".join(
                "<tr>"
                + "".join(
                    f'<td class="num">{_inline(c)}</td>' if i in b.numeric else f"<td>{_inline(c)}</td>"
                    for i, c in enumerate(row)
                )
                + "</tr>"
                for row in b.rows
            )
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif isinstance(b, Image):
            cap = f"<figcaption>{_inline(b.caption)}</figcaption>" if b.caption else ""
            out.append(f'<figure><img src="{data_uri(b.png)}" alt="{html.escape(b.alt)}">{cap}</figure>')
        elif isinstance(b, Code):
            out.append(f"<pre><code>{html.escape(b.text.rstrip(), quote=False)}</code></pre>")
        else:  # pragma: no cover
            raise TypeError(f"unknown block {type(b).__name__}")
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"
