"""Proposers: `mutation` (genetic programming, offline, the default) and `llm` (any litellm
model). Each returns a Proposal built from parents that selection picked (`base.py`); a
campaign builds the one its config names through `registry.make_proposer`."""
