"""Blocks to pages: Markdown for the repository, and one self-contained HTML page (the CSS inline, every figure a
base64 data URI, nothing fetched). One renderer per block kind, in a table per format; a renderer takes the block
and the page's context (figure numbers, the figures' bytes, the navigation) and returns its text."""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from importlib import resources


@dataclass
class Context:
    figures: dict[str, bytes] = field(default_factory=dict)  # file name -> PNG bytes
    nav: str = ""  # the HTML links to every section
    number: int = 0  # the number of the figure being rendered


def _text(cell) -> str:
    return cell[0] if isinstance(cell, tuple) else cell


def _markdown_table(b: dict, _: Context) -> str:
    lines = ["| " + " | ".join(b["header"]) + " |"]
    lines.append("|" + "|".join("--:" if a == "r" else "---" for a in b["align"]) + "|")
    lines += ["| " + " | ".join(_text(c).replace("|", "\\|") for c in row) + " |" for row in b["rows"]]
    return "\n".join(lines)


MARKDOWN = {
    "title": lambda b, c: f"# {b['text']}",
    "h2": lambda b, c: f"## {b['text']}",
    "meta": lambda b, c: b["text"],
    "p": lambda b, c: b["text"],
    "caption": lambda b, c: b["text"],
    "verdict": lambda b, c: f"> **Verdict:** {b['text']}",
    "cards": lambda b, c: " · ".join(f"{label}: **{value}**" for label, value, _ in b["cards"]),
    "table": _markdown_table,
    "figure": lambda b, c: f"![figure {c.number}]({b['file']})\n\n**Figure {c.number}.** {b['caption']}",
    "list": lambda b, c: "\n".join(f"{i}. {item}" for i, item in enumerate(b["items"], start=1)),
    "pre": lambda b, c: f"```yaml\n{b['text']}\n```",
}


def render(blocks: list[dict], renderers: dict, context: Context) -> list[str]:
    out = []
    for block in blocks:
        if block["kind"] == "figure":
            context.number += 1
        out.append(renderers[block["kind"]](block, context))
    return out


def render_markdown(blocks: list[dict]) -> str:
    return "".join(text + "\n\n" for text in render(blocks, MARKDOWN, Context())).rstrip("\n") + "\n"


def inline(text: str) -> str:
    """Escaped HTML with the Markdown we write inline: `code` and **bold**."""
    out = html.escape(text, quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)


def png_css_width(data: bytes) -> int | None:
    """The width in CSS pixels (96 per inch) of a PNG, from its pixel width and the resolution in its pHYs chunk."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    width = int.from_bytes(data[16:20], "big")
    at = data.find(b"pHYs")
    if at > 0 and data[at + 12] == 1:  # unit 1: pixels per metre
        per_inch = int.from_bytes(data[at + 4 : at + 8], "big") * 0.0254
        if per_inch > 0:
            return round(width * 96 / per_inch)
    return width


def _class(*names: str) -> str:
    joined = " ".join(n for n in names if n)
    return f' class="{joined}"' if joined else ""


def html_table(b: dict, _: Context | None = None) -> str:
    numeric = ["num" if a == "r" else "" for a in b["align"]]
    head = "".join(f"<th{_class(n)}>{html.escape(h)}</th>" for h, n in zip(b["header"], numeric, strict=True))
    rows = []
    for row, row_class in zip(b["rows"], b["row_classes"] or [""] * len(b["rows"]), strict=True):
        cells = []
        for cell, num in zip(row, numeric, strict=True):
            text, extra = cell if isinstance(cell, tuple) else (cell, "")
            cells.append(f"<td{_class(num, extra)}>{inline(text)}</td>")
        rows.append(f"<tr{_class(row_class)}>{''.join(cells)}</tr>")
    table = f"<table{_class('compact' if b['compact'] else '')}><thead><tr>{head}</tr></thead>"
    return f'<div class="table">{table}<tbody>{"".join(rows)}</tbody></table></div>'


def _html_cards(b: dict, _: Context) -> str:
    cards = "".join(
        f'<div class="card"><div class="label">{html.escape(label)}</div>'
        f'<div class="value">{html.escape(value)}</div><div class="sub">{html.escape(sub)}</div></div>'
        for label, value, sub in b["cards"]
    )
    return f'<div class="cards">{cards}</div>'


def _html_figure(b: dict, context: Context) -> str:
    data = context.figures[b["file"]]
    width = png_css_width(data)
    size = f' width="{width}"' if width else ""
    uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    n = context.number
    return (
        f'<figure><img src="{uri}" alt="figure {n}: {html.escape(b["file"])}"{size}>'
        f"<figcaption><strong>Figure {n}.</strong> {inline(b['caption'])}</figcaption></figure>"
    )


HTML = {
    "title": lambda b, c: f"<header><h1>{inline(b['text'])}</h1>",
    "meta": lambda b, c: f'<p class="meta">{inline(b["text"])}</p><nav>{c.nav}</nav></header>',
    "verdict": lambda b, c: f'<div class="verdict {b["tone"]}"><span>Verdict</span>{inline(b["text"])}</div>',
    "cards": _html_cards,
    "h2": lambda b, c: f'<h2 id="{b["id"]}">{html.escape(b["text"])}</h2>',
    "p": lambda b, c: f"<p>{inline(b['text'])}</p>",
    "caption": lambda b, c: f'<p class="caption">{inline(b["text"])}</p>',
    "table": html_table,
    "figure": _html_figure,
    "list": lambda b, c: "<ol>" + "".join(f"<li>{inline(item)}</li>" for item in b["items"]) + "</ol>",
    "pre": lambda b, c: f"<pre><code>{html.escape(b['text'], quote=False)}</code></pre>",
}


def package_file(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def render_html(blocks: list[dict], figures: dict[str, bytes]) -> str:
    nav = " ".join(f'<a href="#{b["id"]}">{html.escape(b["text"])}</a>' for b in blocks if b["kind"] == "h2")
    body = render(blocks, HTML, Context(figures, nav))
    title = next((b["text"] for b in blocks if b["kind"] == "title"), "dontstop report")
    page = package_file("page.html")
    return page.format(title=html.escape(title), css=package_file("report.css"), body="\n".join(body))
