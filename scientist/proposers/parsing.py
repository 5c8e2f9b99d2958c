"""Turning a model's reply into a candidate module: code extraction and SEARCH/REPLACE edits.

Everything here returns a `Parsed` (code, or None with the reason) rather than raising: a
reply without usable code is an ordinary outcome that the archive records. Whatever comes
out has been parsed by `ast` and defines the task's entry point at module level, and went
through `task.render(source=...)`. Validity beyond that is the sandbox's business.
"""

import ast
import re
import textwrap
from dataclasses import dataclass

from sandbox.tasks import TaskSpec

PYTHON_TAGS = frozenset({"", "python", "python3", "py", "py3"})

_FENCE_OPEN = re.compile(r"^[ \t]*(?P<fence>`{3,}|~{3,})[ \t]*(?P<tag>[\w+.#-]*)[^\n`]*$")
_THINKING = re.compile(r"<think(?:ing)?>.*?</think(?:ing)?>", re.DOTALL | re.IGNORECASE)
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
    answer."""
    return _THINKING.sub("", text)


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


def defines_entry_point(source: str, entry_point: str) -> str | None:
    """None when `source` parses and defines `def <entry_point>` at module level, else why not."""
    try:
        tree = ast.parse(source)
    except SyntaxError as error:
        return f"the code does not parse: line {error.lineno}: {error.msg}"
    except (ValueError, RecursionError, MemoryError) as error:
        return f"the code does not parse: {type(error).__name__}"
    if not any(
        isinstance(node, ast.FunctionDef) and node.name == entry_point for node in tree.body
    ):
        return f"the code does not define `def {entry_point}(...)` at module level"
    return None


def _mentions_entry_point(text: str, entry_point: str) -> bool:
    return re.search(rf"^def[ \t]+{re.escape(entry_point)}[ \t]*\(", text, re.MULTILINE) is not None


def _looks_like_python(block: Block) -> bool:
    return block.tag in PYTHON_TAGS and bool(block.text.strip())


def _unfenced_module(text: str, entry_point: str) -> str | None:
    """The code in a reply without fences: from the first line that opens a module, dropping
    trailing prose lines one at a time until the rest parses and defines the entry point."""
    lines = text.strip().splitlines()
    start = next((i for i, line in enumerate(lines) if _CODE_START.match(line)), None)
    if start is None:
        return None
    lines = lines[start:]
    for end in range(len(lines), max(0, len(lines) - 20), -1):  # a few lines of sign-off at most
        candidate = "\n".join(lines[:end])
        if defines_entry_point(candidate, entry_point) is None:
            return candidate
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
        return chosen.text.strip(
            "\n"
        ) + "\n", f"code from fenced block {blocks.index(chosen) + 1} of {len(blocks)}"
    source = _unfenced_module(text, entry_point)
    if source is None:
        return (
            None,
            f"the reply holds no code block and no module defining `def {entry_point}(...)`",
        )
    return source.strip("\n") + "\n", "code from a reply without fences"


def extract_module(text: str, task: TaskSpec) -> Parsed:
    """A rendered candidate module from a reply that should contain a complete module."""
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
    """The SEARCH/REPLACE blocks of a reply, and an error when a block is malformed. Fence
    lines around or between blocks are ignored; inside a block they are content."""
    edits, lines, i = [], strip_thinking(text or "").splitlines(), 0
    while i < len(lines):
        if not _SEARCH.match(lines[i]):
            i += 1
            continue
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
    while lines and not lines[0].strip():
        lines = lines[1:]
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    return lines


def _find(lines: list[str], search: list[str], key) -> int | None:
    wanted = [key(line) for line in search]
    for start in range(len(lines) - len(search) + 1):
        if [key(line) for line in lines[start : start + len(search)]] == wanted:
            return start
    return None


def apply_edit(source: str, edit: Edit) -> str | None:
    """`source` with the first run of whole lines matching the edit's SEARCH section replaced;
    None if there is none. Exact lines first; then lines equal up to surrounding whitespace,
    the replacement shifted by the indentation difference on the first matched line (models
    often lose or add a level of indentation when quoting)."""
    search = _trim_blank(edit.search.splitlines())
    if not search:
        return None
    lines = source.splitlines()
    replacement = edit.replace.splitlines()
    start = _find(lines, search, lambda line: line.rstrip())
    if start is None:
        start = _find(lines, search, str.strip)
        if start is None:
            return None
        first = next(k for k, line in enumerate(search) if line.strip())
        replacement = _reindent(replacement, _indent(lines[start + first]) - _indent(search[first]))
    merged = lines[:start] + replacement + lines[start + len(search) :]
    return "\n".join(merged) + ("\n" if source.endswith("\n") else "")


def apply_edits(source: str, edits: list[Edit]) -> tuple[str | None, str]:
    """All edits applied in order (each to the result of the previous), or None and why."""
    for number, edit in enumerate(edits, 1):
        if not edit.search.strip():
            return None, f"edit block {number} has an empty SEARCH section"
        edited = apply_edit(source, edit)
        if edited is None:
            first = next(line.strip() for line in edit.search.splitlines() if line.strip())
            return (
                None,
                f"edit block {number} does not match the parent (SEARCH starting {first[:60]!r})",
            )
        source = edited
    return source, f"{len(edits)} edit block(s) applied"


def edit_module(text: str, parent_source: str, task: TaskSpec) -> Parsed:
    """A rendered candidate from a reply that edits `parent_source` with SEARCH/REPLACE blocks.
    A reply that ignored the format and gave a complete module instead is accepted as such."""
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
