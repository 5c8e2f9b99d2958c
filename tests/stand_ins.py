"""Executors that stand in for the sandbox where only the bookkeeping is under test."""

from dataclasses import replace

from harness.cascade import Evaluation, EvaluationRequest


def blockwise(evaluate):
    """An executor from a stand-in that scores one block of seeds per call: the further
    blocks an executor must honour (harness.cascade.evaluate_batch) become further calls,
    each evaluation listing every block's in `blocks` as the cascade does."""

    def executor(request: EvaluationRequest) -> list[Evaluation]:
        options = dict(
            sandbox=request.sandbox,
            claims=request.claims,
            cancelled=request.cancelled,
            fidelity=request.fidelity,
        )

        def one_block(seed, eval_seed) -> list[Evaluation]:
            sources = list(request.sources)
            return evaluate(
                request.task, sources, request.budget, seed=seed, eval_seed=eval_seed, **options
            )

        first = one_block(request.seed, request.eval_seed)
        if request.further_blocks:
            rest = [one_block(*block) for block in request.further_blocks]
            for i, evaluation in enumerate(first):
                evaluation.blocks = [replace(evaluation), *(r[i] for r in rest)]
        return first

    return executor
