"""The SQL archive: every candidate with its lineage, scores and the calls that made it."""
