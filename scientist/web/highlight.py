"""Code and diffs as highlighted HTML (pygments, on the server). Pygments escapes the
text it formats, so the result is safe to insert into a page."""

import difflib
import functools

from markupsafe import Markup
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import DiffLexer, PythonLexer

CSS_CLASS = "highlight"


@functools.cache
def _formatter(line_numbers: bool) -> HtmlFormatter:
    return HtmlFormatter(cssclass=CSS_CLASS, linenos="table" if line_numbers else False)


def python_html(code: str) -> Markup:
    return Markup(highlight(code, PythonLexer(), _formatter(True)))


def unified_diff(old: str, new: str, old_label: str, new_label: str) -> str:
    return "".join(difflib.unified_diff(_lines(old), _lines(new), old_label, new_label))


def _lines(text: str) -> list[str]:
    # A last line without its newline would run into the diff's next line.
    return [line if line.endswith("\n") else line + "\n" for line in text.splitlines(True)]


def diff_html(text: str) -> Markup:
    return Markup(highlight(text, DiffLexer(), _formatter(False)))


@functools.cache
def stylesheet() -> str:
    return _formatter(False).get_style_defs(f".{CSS_CLASS}")
