"""`scientist train --candidate`, the part that runs the candidate: inside the sandbox only.

    python -m sandbox.training.run_training in/request.json

Request: {"filename": the name the user gave the file (for messages), "train": a
TrainRequest}. Loads the drift in in/candidate.py, trains and evaluates it as the request
says, and writes out/training.json: the raw returns (sandbox/training/plan.py
TrainedReturns), or {"error": "rejected" | "invalid", "detail": ...} when the candidate
would not load or broke its contract in training.
"""

import sandbox  # noqa: F401  (XLA flags before jax)

# isort: split

import sys
from dataclasses import asdict

from sandbox.candidate import CandidateLoadError, load_entry_point
from sandbox.oneshot import inputs, write_result
from sandbox.training.plan import RESULT_FILE, TrainRequest, run_in_process
from sandbox.training.ppo import CandidateContractError, Components
from sandbox.vocabulary import Status


def main(request_path: str) -> int:
    request, source, out = inputs(request_path)
    plan = TrainRequest.from_dict(request["train"]).plan()
    try:
        drift = load_entry_point(source, "drift", filename=str(request["filename"]))
    except CandidateLoadError as error:
        write_result(out, RESULT_FILE, {"error": Status.REJECTED, "detail": str(error)})
        return 0
    try:
        returns = run_in_process(plan, Components(drift=drift))
    except CandidateContractError as error:
        write_result(out, RESULT_FILE, {"error": Status.INVALID, "detail": str(error)})
        return 0
    write_result(out, RESULT_FILE, asdict(returns))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
