"""Record each test module's measured seconds (setup, calls and teardown summed) for the
scheduling order in conftest.py, from a run with every duration printed:

    python -m pytest --durations=0 | python tests/record_durations.py
"""

import json
import re
import sys
from collections import Counter
from pathlib import Path

LINE = re.compile(r"\s*([\d.]+)s (?:call|setup|teardown)\s+tests/(\w+)\.py::")


def main() -> None:
    seconds = Counter()
    for line in sys.stdin:
        match = LINE.match(line)
        if match:
            seconds[match.group(2)] += float(match.group(1))
    if not seconds:
        sys.exit("no durations read: run pytest with --durations=0")
    path = Path(__file__).with_name("durations.json")
    path.write_text(json.dumps({k: round(v) for k, v in seconds.most_common()}, indent=1) + "\n")
    print(f"{path}: {len(seconds)} modules, {sum(seconds.values()):.0f} s in all")


if __name__ == "__main__":
    main()
