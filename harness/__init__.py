"""The trusted side around a sandbox: it starts one and reads what it leaves, and never
imports candidate code.

`cascade` (the evaluation cascade: static checks here, then the sandboxed stages, then the
scorer), `backends/` (process and Docker sandboxes, chosen by name), `scorer` (a separate
trusted process scoring trained parameters) and `scoring` (its warm processes), `outputs`
(a sandbox's files read without following links), `oneshot`, `check` and `train`
(`scientist check` and `train --candidate`) and `landscape` (a drift's landscape computed
in the sandbox).
"""
