"""Turning a model's reply into a candidate module: code extraction and SEARCH/REPLACE edits.

Everything here returns a `Parsed` (code, or None with the reason) rather than raising: a
reply without usable code is an ordinary outcome that the archive records. Whatever comes
out has been parsed by `ast` and defines the task's entry point at module level, and went
through `task.render(source=...)`. Validity beyond that is the sandbox's business.

A reply comes from a server we do not control (`max_tokens` is only a request), so the work
is bounded: replies over MAX_REPLY_CHARS are refused unread, every stage is linear in the
reply, and a reply is given to `ast.parse` a bounded number of times.
"""

import ast
import re
import textwrap
from dataclasses import dataclass

from sandbox.tasks import TaskSpec

PYTHON_TAGS = frozenset({"", "python", "python3", "py", "py3"})
# About 50,000 tokens: ten times what a module of this project takes, and small enough that
# parsing stays well under a second.
MAX_REPLY_CHARS = 200_000
# Each SEARCH/REPLACE block is applied to the whole module, so their number multiplies the
# work; an edit of one module needs a handful.
MAX_EDIT_BLOCKS = 64
# A SEARCH section that matches only after shifting it this far is no quoting slip; and a
# bounded shift keeps a short replacement from growing into megabytes of indentation.
MAX_REINDENT_COLUMNS = 32
# Lines of sign-off prose after an unfenced module that may be dropped to make it parse.
MAX_SIGN_OFF_LINES = 20
# Parses spent dropping that prose: each one cuts at the line the parser blamed.
MAX_TRIM_PARSES = 4

# Possessive tag and tail: with plain `*` a long info string ending in a backtick is tried
# at every split point between the two (quadratic); neither can match a backtick anyway.
_FENCE_OPEN = re.compile(r"^[ \t]*(?P<fence>`{3,}|~{3,})[ \t]*(?P<tag>[\w+.#-]*+)[^\n`]*+$")
_THINK_OPEN = re.compile(r"<think(?:ing)?>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</think(?:ing)?>", re.IGNORECASE)
_SEARCH = re.compile(r"^[ \t]*<{5,}[ \t]*SEARCH[ \t]*$")
_DIVIDER = re.compile(r"^[ \t]*={5,}[ \t]*$")
_REPLACE = re.compile(r"^[ \t]*>{5,}[ \t]*REPLACE[ \t]*$")
# Lines that can open a module when a reply gives code without fences.
_CODE_START = re.compile(r"^(import \w|from [\w.]+ import |def \w|@\w)")


@dataclass(frozen=True)
class Parsed:
    code: str | None  # the rendered candidate module, or None
    note: str  # why there is no code, or how the code was obtained

    @property
    def ok(self) -> bool:
        return self.code is not None


@dataclass(frozen=True)
class Block:
    tag: str  # the fence's language tag, lower case ("" when none)
    text: str


@dataclass(frozen=True)
class Edit:
    search: str
    replace: str


# --- code blocks ---------------------------------------------------------------------------


def strip_thinking(text: str) -> str:
    """Drops <think>...</think> sections: reasoning models draft code there that is not the
    answer. An unclosed section is kept. One pass: once an opening tag has no closing one
    after it, no later one can have either."""
    kept, position = [], 0
    while opening := _THINK_OPEN.search(text, position):
        closing = _THINK_CLOSE.search(text, opening.end())
        if closing is None:
            break
        kept.append(text[position : opening.start()])
        position = closing.end()
    kept.append(text[position:])
    return "".join(kept)


def fenced_blocks(text: str) -> list[Block]:
    """The fenced blocks of a Markdown reply, in order. A fence left open at the end (a reply
    cut off by the token limit) runs to the end of the text."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        match = _FENCE_OPEN.match(lines[i])
        if not match:
            i += 1
            continue
        fence = match["fence"]
        body, i = [], i + 1
        while i < len(lines):
            stripped = lines[i].strip()
            if stripped and set(stripped) == {fence[0]} and len(stripped) >= len(fence):
                break
            body.append(lines[i])
            i += 1
        # Dedented: a fence inside a Markdown list indents the whole block.
        blocks.append(Block(match["tag"].lower(), textwrap.dedent("\n".join(body))))
        i += 1
    return blocks


class _Unparsable(Exception):
    """Why a source does not parse, and the line the parser blamed (None when unknown)."""

    def __init__(self, reason: str, line: int | None = None):
        super().__init__(reason)
        self.reason, self.line = reason, line


def _syntax_tree(source: str) -> ast.Module:
    """The module's tree; raises _Unparsable."""
    try:
        return ast.parse(source)
    except SyntaxError as error:
        raise _Unparsable(f"line {error.lineno}: {error.msg}", error.lineno) from None
    except (ValueError, RecursionError, MemoryError) as error:
        raise _Unparsable(type(error).__name__) from None


def _defines(tree: ast.Module, entry_point: str) -> bool:
    return any(isinstance(node, ast.FunctionDef) and node.name == entry_point for node in tree.body)


def defines_entry_point(source: str, entry_point: str) -> str | None:
    """None when `source` parses and defines `def <entry_point>` at module level, else why not."""
    try:
        tree = _syntax_tree(source)
    except _Unparsable as error:
        return f"the code does not parse: {error.reason}"
    if not _defines(tree, entry_point):
        return f"the code does not define `def {entry_point}(...)` at module level"
    return None


def _mentions_entry_point(text: str, entry_point: str) -> bool:
    return re.search(rf"^def[ \t]+{re.escape(entry_point)}[ \t]*\(", text, re.MULTILINE) is not None


def _looks_like_python(block: Block) -> bool:
    return block.tag in PYTHON_TAGS and bool(block.text.strip())


def _unfenced_module(text: str, entry_point: str) -> str | None:
    """The code in a reply without fences: from the first line that opens a module, cut
    before the line the parser blames (trailing prose) until the rest parses, if it then
    defines the entry point. A parse that succeeds ends the search: dropping lines from
    a module that parses cannot add a definition to it."""
    lines = text.strip().splitlines()
    start = next((i for i, line in enumerate(lines) if _CODE_START.match(line)), None)
    if start is None:
        return None
    lines = lines[start:]
    if not _mentions_entry_point("\n".join(lines), entry_point):
        return None  # most prose replies: no parse at all
    end, shortest = len(lines), max(1, len(lines) - MAX_SIGN_OFF_LINES)
    for _ in range(MAX_TRIM_PARSES):
        candidate = "\n".join(lines[:end])
        try:
            tree = _syntax_tree(candidate)
        except _Unparsable as error:
            end = min(error.line or end, end) - 1  # the blamed line and all after it go
            if end < shortest:
                return None
            continue
        return candidate if _defines(tree, entry_point) else None
    return None


def extract_code(text: str, entry_point: str) -> tuple[str | None, str]:
    """The module source in a reply, unrendered, with a note. Among fenced blocks the last one
    defining the entry point wins (models usually end with their final version), else the
    longest Python-looking block is tried so that the reason for refusing it is precise."""
    text = strip_thinking(text or "")
    if not text.strip():
        return None, "the reply is empty"
    blocks = fenced_blocks(text)
    if blocks:
        defining = [b for b in blocks if _mentions_entry_point(b.text, entry_point)]
        if defining:
            chosen = defining[-1]
        else:
            pythonic = [b for b in blocks if _looks_like_python(b)]
            if not pythonic:
                return (
                    None,
                    f"the reply has {len(blocks)} fenced block(s) but none holds Python code",
                )
            chosen = max(pythonic, key=lambda b: len(b.text))
        reason = defines_entry_point(chosen.text, entry_point)
        if reason:
            return None, f"{reason} (in the fenced block chosen from {len(blocks)})"
        number = next(n for n, block in enumerate(blocks, 1) if block is chosen)
        return chosen.text.strip("\n") + "\n", f"code from fenced block {number} of {len(blocks)}"
    source = _unfenced_module(text, entry_point)
    if source is None:
        return (
            None,
            f"the reply holds no code block and no module defining `def {entry_point}(...)`",
        )
    return source.strip("\n") + "\n", "code from a reply without fences"


def _oversized(text: str | None) -> str | None:
    """Why a reply is too long to parse, or None. The reply itself is still recorded."""
    if text and len(text) > MAX_REPLY_CHARS:
        return (
            f"the reply has {len(text):,} characters; replies over {MAX_REPLY_CHARS:,} "
            "are not parsed"
        )
    return None


def extract_module(text: str, task: TaskSpec) -> Parsed:
    """A rendered candidate module from a reply that should contain a complete module."""
    too_long = _oversized(text)
    if too_long:
        return Parsed(None, too_long)
    source, note = extract_code(text, task.entry_point)
    if source is None:
        return Parsed(None, note)
    return _rendered(source, task, note)


def _rendered(source: str, task: TaskSpec, note: str) -> Parsed:
    code = task.render(source=source)
    reason = defines_entry_point(code, task.entry_point)  # the template could in principle break it
    return Parsed(None, f"rendering broke the code: {reason}") if reason else Parsed(code, note)


# --- SEARCH/REPLACE edits -------------------------------------------------------------------


def parse_edits(text: str) -> tuple[list[Edit], str | None]:
    """The SEARCH/REPLACE blocks of a reply, and an error when a block is malformed or there
    are more than MAX_EDIT_BLOCKS. Fence lines around or between blocks are ignored; inside a
    block they are content."""
    edits, lines, i = [], strip_thinking(text or "").splitlines(), 0
    while i < len(lines):
        if not _SEARCH.match(lines[i]):
            i += 1
            continue
        if len(edits) == MAX_EDIT_BLOCKS:
            return edits, f"the reply has more than {MAX_EDIT_BLOCKS} edit blocks"
        search, replace, i = [], [], i + 1
        while i < len(lines) and not _DIVIDER.match(lines[i]):
            if _SEARCH.match(lines[i]) or _REPLACE.match(lines[i]):
                return edits, f"edit block {len(edits) + 1} has no ======= line"
            search.append(lines[i])
            i += 1
        if i == len(lines):
            return edits, f"edit block {len(edits) + 1} has no ======= line"
        i += 1
        while i < len(lines) and not _REPLACE.match(lines[i]):
            if _SEARCH.match(lines[i]):
                return edits, f"edit block {len(edits) + 1} has no >>>>>>> REPLACE line"
            replace.append(lines[i])
            i += 1
        if i == len(lines):
            return edits, f"edit block {len(edits) + 1} has no >>>>>>> REPLACE line"
        i += 1
        edits.append(Edit("\n".join(search), "\n".join(replace)))
    return edits, None


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _reindent(lines: list[str], shift: int) -> list[str]:
    if shift >= 0:
        return [(" " * shift + line) if line.strip() else line for line in lines]
    return [line[min(-shift, _indent(line)) :] for line in lines]


def _trim_blank(lines: list[str]) -> list[str]:
    start, end = 0, len(lines)
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return lines[start:end]


def _framed(lines: list[str], key) -> str:
    """Each line under `key` after a newline, then one more: no line holds a newline, so a
    run of lines is a substring of this and nothing else is."""
    return "".join("\n" + key(line) for line in lines) + "\n"


def _find(lines: list[str], search: list[str], key) -> int | None:
    """Where the first run of `lines` equal to `search` under `key` starts. One str.find:
    CPython's search is linear, where comparing a slice at every start is quadratic."""
    haystack = _framed(lines, key)
    at = haystack.find(_framed(search, key))
    return None if at < 0 else haystack.count("\n", 0, at)


def _edit_lines(lines: list[str], edit: Edit) -> list[str] | None:
    """`lines` with the first run matching the edit's SEARCH section replaced; None if there
    is none. Exact lines first; then lines equal up to surrounding whitespace, the
    replacement shifted by the indentation difference on the first matched line (models
    often lose or add a level of indentation when quoting)."""
    search = _trim_blank(edit.search.splitlines())
    if not search:
        return None
    replacement = edit.replace.splitlines()
    start = _find(lines, search, str.rstrip)
    if start is None:
        start = _find(lines, search, str.strip)
        if start is None:
            return None
        first = next(k for k, line in enumerate(search) if line.strip())
        shift = _indent(lines[start + first]) - _indent(search[first])
        if abs(shift) > MAX_REINDENT_COLUMNS:
            return None
        replacement = _reindent(replacement, shift)
    return lines[:start] + replacement + lines[start + len(search) :]


def apply_edits(source: str, edits: list[Edit]) -> tuple[str | None, str]:
    """All edits applied in order (each to the result of the previous), or None and why. The
    module may grow by at most MAX_REPLY_CHARS: what a reply could spell out in full."""
    lines, most = source.splitlines(), len(source) + MAX_REPLY_CHARS
    for number, edit in enumerate(edits, 1):
        if not edit.search.strip():
            return None, f"edit block {number} has an empty SEARCH section"
        edited = _edit_lines(lines, edit)
        if edited is None:
            first = next(line.strip() for line in edit.search.splitlines() if line.strip())
            return (
                None,
                f"edit block {number} does not match the parent (SEARCH starting {first[:60]!r})",
            )
        lines = edited
        if sum(map(len, lines)) > most:
            return None, f"after edit block {number} the module has over {most:,} characters"
    edited_source = "\n".join(lines) + ("\n" if source.endswith("\n") else "")
    return edited_source, f"{len(edits)} edit block(s) applied"


def edit_module(text: str, parent_source: str, task: TaskSpec) -> Parsed:
    """A rendered candidate from a reply that edits `parent_source` with SEARCH/REPLACE blocks.
    A reply that ignored the format and gave a complete module instead is accepted as such."""
    too_long = _oversized(text)
    if too_long:
        return Parsed(None, too_long)
    edits, error = parse_edits(text)
    if error:
        return Parsed(None, error)
    if not edits:
        whole = extract_module(text, task)
        if whole.ok:
            return Parsed(whole.code, f"no edit blocks; {whole.note}")
        return Parsed(
            None, f"the reply has no SEARCH/REPLACE blocks and no complete module ({whole.note})"
        )
    source, note = apply_edits(parent_source, edits)
    if source is None:
        return Parsed(None, note)
    reason = defines_entry_point(source, task.entry_point)
    if reason:
        return Parsed(None, f"after the edits {reason}")
    if source == parent_source:
        return Parsed(None, "the edits leave the parent unchanged")
    return _rendered(source, task, note)
