"""Optional prose for a report, written by an LLM from the report's own text.

The model sees the rendered report (every number in it from the archive) and writes the
discussion. Numbers are never taken on trust: a sentence citing a number that does not
appear in the report, at the precision written, is removed and counted.
"""

import re

from scientist.proposers import prompting
from scientist.report.render import Narrative

NUMBER = re.compile(r"(?<![\w.])[-−]?\d+(?:,\d{3})*(?:\.\d+)?")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\"'])")
MAX_PARAGRAPHS = 6


class NarrativeError(RuntimeError):
    pass


def _numbers(text: str) -> list[str]:
    return [m.group().replace("−", "-").replace(",", "") for m in NUMBER.finditer(text)]


def supported(number: str, facts: set[str]) -> bool:
    """Whether `number` appears in the facts at the precision written (1.23 matches 1.234)."""
    if number in facts:
        return True
    decimals = len(number.split(".")[1]) if "." in number else 0
    value = float(number)
    return any(round(float(fact), decimals) == value for fact in facts)


def check_prose(text: str, facts_text: str) -> tuple[tuple[str, ...], int]:
    """The paragraphs with unsupported sentences removed, and how many were removed."""
    facts = set(_numbers(facts_text))
    paragraphs, dropped = [], 0
    for block in re.split(r"\n\s*\n", text.strip()):
        block = " ".join(line.strip().lstrip("#*- ") for line in block.splitlines()).strip()
        if not block:
            continue
        kept = []
        for sentence in SENTENCE_END.split(block):
            if all(supported(n, facts) for n in _numbers(sentence)):
                kept.append(sentence)
            else:
                dropped += 1
        if kept:
            paragraphs.append(" ".join(kept))
    return tuple(paragraphs[:MAX_PARAGRAPHS]), dropped


def write_narrative(facts_text: str, llm, *, paragraphs: int = 3) -> Narrative:
    """Ask `llm` (an LLMProposer: its retries, timeout, pricing and key) for the discussion.
    Raises NarrativeError when the model gives nothing usable."""
    message = prompting.render("report_narrative.j2", facts=facts_text, paragraphs=paragraphs)
    record, _ = llm.complete([{"role": "user", "content": message}])
    if not record.response:
        raise NarrativeError(
            f"{record.model} returned no discussion: {record.error or 'empty reply'}"
        )
    kept, dropped = check_prose(record.response, facts_text)
    if not kept:
        raise NarrativeError(
            f"every sentence {record.model} wrote cited numbers that are not in the report"
        )
    return Narrative(kept, record.model, dropped, record.cost_usd)
