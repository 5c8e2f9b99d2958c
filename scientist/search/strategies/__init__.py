"""Search strategies, one per module: a module that defines `STRATEGY` (a
`strategy.StrategyKind`) adds one, named by it; `scientist run --selection NAME` picks it.
Nothing else changes."""
