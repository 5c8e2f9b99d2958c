"""Loading candidate modules.

A candidate is executed with a reduced set of builtins and an `__import__` that only admits
the static checker's allowlist, as a second line behind the static checks (which must pass
first). In-process loading is still only as safe as those two layers; untrusted
candidates are loaded inside the sandbox process, never in the orchestrator.
"""

import builtins
import dis
import sys
from pathlib import Path

from sandbox.checks.purity import mutable_state
from sandbox.checks.static import ALLOWED_IMPORTS, check_source

_SAFE_BUILTIN_NAMES = (
    "abs all any bool complex dict divmod enumerate filter float frozenset int isinstance "
    "issubclass len list map max min next pow range repr reversed round set slice sorted str "
    "sum tuple zip iter callable hash id True False None NotImplemented Ellipsis "
    "ArithmeticError AssertionError Exception FloatingPointError IndexError KeyError "
    "LookupError NotImplementedError OverflowError RuntimeError StopIteration TypeError "
    "ValueError ZeroDivisionError"
).split()


class CandidateLoadError(ValueError):
    pass


_IMPORT_NAME = dis.opmap["IMPORT_NAME"]


def _guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
    # C code (numpy, jaxlib) importing lazily while a candidate frame is the innermost Python
    # frame also lands here; only an `import` statement in candidate code is checked.
    caller = sys._getframe(1)
    if caller.f_code.co_code[caller.f_lasti] == _IMPORT_NAME and (
        level or name not in ALLOWED_IMPORTS
    ):
        raise ImportError(f"import of {name!r} is not allowed in a candidate")
    return builtins.__import__(name, globals, locals, fromlist, level)


def _safe_builtins() -> dict:
    safe = {name: getattr(builtins, name) for name in _SAFE_BUILTIN_NAMES}
    safe["__import__"] = _guarded_import
    return safe


def load_entry_point(source: str, entry_point: str, *, filename: str = "candidate.py"):
    """Statically check `source`, execute it with restricted builtins, return `entry_point`."""
    violations = check_source(source)
    if violations:
        raise CandidateLoadError("; ".join(str(v) for v in violations))
    namespace = {"__builtins__": _safe_builtins(), "__name__": "candidate"}
    try:
        exec(compile(source, filename, "exec"), namespace)  # noqa: S102  (checked above)
    except MemoryError:
        raise  # resource exhaustion, not a verdict on the code: the caller reports it as such
    except Exception as error:  # a failure in candidate code becomes one clear error
        raise CandidateLoadError(
            f"{filename} failed to load: {type(error).__name__}: {error}"
        ) from error
    kept = mutable_state(namespace)
    if kept:
        raise CandidateLoadError(f"{filename} keeps mutable state: {kept}")
    function = namespace.get(entry_point)
    if not callable(function):
        raise CandidateLoadError(f"{filename} must define a function {entry_point}()")
    return function


def load_entry_point_file(path: Path, entry_point: str):
    path = Path(path)
    if not path.is_file():
        raise CandidateLoadError(f"candidate file not found: {path}")
    return load_entry_point(path.read_text(), entry_point, filename=str(path))
