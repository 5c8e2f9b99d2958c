"""`--json` output: one JSON object per line on stdout."""

import json
import math
import sys


def json_safe(value):
    """JSON has no NaN or infinity: report them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def print_json(data) -> None:
    sys.stdout.write(json.dumps(json_safe(data)) + "\n")
