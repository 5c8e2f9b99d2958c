"""Executors that stand in for the sandbox where only the bookkeeping is under test."""

from dataclasses import replace

from sandbox.cascade import Evaluation


def blockwise(evaluate):
    """An executor from a stand-in that scores one block of seeds per call: the further
    blocks an executor must honour (sandbox.cascade.evaluate_batch) become further calls,
    each evaluation listing every block's in `blocks` as the cascade does."""

    def executor(task, sources, budget, *, seed, eval_seed=None, further_blocks=(), **options):
        def one_block(seed, eval_seed) -> list[Evaluation]:
            return evaluate(task, sources, budget, seed=seed, eval_seed=eval_seed, **options)

        first = one_block(seed, eval_seed)
        if further_blocks:
            rest = [one_block(*block) for block in further_blocks]
            for i, evaluation in enumerate(first):
                evaluation.blocks = [replace(evaluation), *(r[i] for r in rest)]
        return first

    return executor
