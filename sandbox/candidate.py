"""Loading a candidate module from a file.

This imports the file in the current process, so it is only for code the user trusts (their
own drift in `scientist train`). Untrusted candidates go through the sandbox.
"""

import importlib.util
import uuid
from pathlib import Path

from sandbox.training.components import Drift


class CandidateLoadError(ValueError):
    pass


def load_module(path: Path):
    path = Path(path)
    if not path.is_file():
        raise CandidateLoadError(f"candidate file not found: {path}")
    spec = importlib.util.spec_from_file_location(f"candidate_{uuid.uuid4().hex}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as error:  # any failure in user code becomes one clear error
        raise CandidateLoadError(f"{path}: failed to load: {type(error).__name__}: {error}") from error
    return module


def load_drift(path: Path) -> Drift:
    drift = getattr(load_module(path), "drift", None)
    if not callable(drift):
        raise CandidateLoadError(f"{path} must define a function drift(ratio, advantage)")
    return drift
