"""Validity checks of candidates; `pipeline.check_candidate` runs them in order."""
