"""`scientist report`: a paper-style report of a campaign, built from the archive.

data.py reads what the report says, figures.py draws it, render.py writes HTML, Markdown
and PDF, narrative.py optionally adds LLM-written prose whose numbers are checked against
the report's own.
"""

from scientist.report.build import build_report

__all__ = ["build_report"]
