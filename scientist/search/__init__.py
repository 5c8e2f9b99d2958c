"""The search: which parents each proposal sees and which candidates are promoted
(`strategy.py`, one strategy per module in `strategies/`), how verdicts reach the archive
(`recorder.py`), seeds and their blocks (`seed_blocks.py`) and paired comparisons with the
baselines (`paired.py`)."""
