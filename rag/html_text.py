"""HTML -> markdown-like text (headings as `#` lines) with the source line of every output line. Standard library only."""

from __future__ import annotations

import re
from html.parser import HTMLParser

_SKIP_TAGS = {"script", "style", "head", "noscript", "template", "svg", "iframe"}
_BLOCK_TAGS = {"p", "div", "section", "article", "main", "header", "footer", "aside", "nav", "ul", "ol", "li",
               "table", "tr", "pre", "blockquote", "hr", "br", "dl", "dt", "dd", "figure", "figcaption", "form",
               "h1", "h2", "h3", "h4", "h5", "h6", "title", "body", "html"}


class _TextExtractor(HTMLParser):
    """HTML -> markdown-like text (headings as `#` lines) with the source line of every output line."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.lines: list[tuple[str, int]] = []
        self.current: list[str] = []
        self.current_line = 0
        self.skip_depth = 0
        self.pre = 0
        self.title: str | None = None
        self.in_title = False

    def _flush(self):
        text = "".join(self.current)
        text = text if self.pre else re.sub(r"[ \t\f\v]+", " ", text).strip()
        if text:
            self.lines.append((text, self.current_line))
        self.current = []

    def _blank(self):
        self._flush()
        if self.lines and self.lines[-1][0] != "":
            self.lines.append(("", self.getpos()[0]))

    def handle_starttag(self, tag, attrs):
        if tag == "title":
            self.in_title = True
            return
        if tag in _SKIP_TAGS:
            self.skip_depth += 1
            return
        if tag in _BLOCK_TAGS:
            self._blank() if tag in {"p", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "table", "ul", "ol"} else self._flush()
        if tag == "pre":
            self.pre += 1
        if len(tag) == 2 and tag[0] == "h" and tag[1].isdigit():
            self._add("#" * int(tag[1]) + " ")
        elif tag == "li":
            self._add("- ")

    def handle_endtag(self, tag):
        if tag == "title":
            self.in_title = False
            return
        if tag in _SKIP_TAGS:
            self.skip_depth = max(0, self.skip_depth - 1)
            return
        if tag == "pre":
            self.pre = max(0, self.pre - 1)
        if tag in _BLOCK_TAGS:
            self._blank() if tag in {"p", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "table", "ul", "ol"} else self._flush()

    def _add(self, text: str):
        if not self.current:
            self.current_line = self.getpos()[0]
        self.current.append(text)

    def handle_data(self, data):
        if self.in_title:
            self.title = ((self.title or "") + data).strip() or None
            return
        if self.skip_depth:
            return
        if self.pre:
            parts = data.split("\n")
            line = self.getpos()[0]
            for i, part in enumerate(parts):
                if i:
                    self._flush()
                    self.current_line = line + i
                if part:
                    if not self.current:
                        self.current_line = line + i
                    self.current.append(part)
            return
        if data.strip() or self.current:
            if not self.current:
                self.current_line = self.getpos()[0] + data[: len(data) - len(data.lstrip())].count("\n")
            self.current.append(data.replace("\n", " "))


def html_to_text(html: str) -> tuple[str, list[int], str | None]:
    """Returns (text, source line for each text line, <title>)."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    parser._flush()
    lines = parser.lines
    while lines and lines[-1][0] == "":
        lines.pop()
    while lines and lines[0][0] == "":
        lines.pop(0)
    return "\n".join(t for t, _ in lines), [n for _, n in lines], parser.title
