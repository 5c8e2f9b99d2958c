import sandbox  # noqa: F401  (sets XLA flags before any test imports jax)

# isort: split

import json
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def postgres_url():
    """URL of the `postgres` database on a real PostgreSQL server started for this test session
    (tests/postgres_server.py), stopped at its end. A test that needs its own database makes
    one: postgres_server.create_database(postgres_url)."""
    from postgres_server import PostgresServer, PostgresUnavailable

    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (pip install -e '.[postgres]')")
    try:
        server = PostgresServer()
    except PostgresUnavailable as error:
        pytest.skip(str(error))
    server.start()
    try:
        yield server.url()
    finally:
        server.stop()


# Each module's measured seconds (tests/record_durations.py); a module not listed counts as 0.
DURATIONS = json.loads((Path(__file__).parent / "durations.json").read_text())


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the marks into node ids
def pytest_collection_modifyitems(items):
    """Under `-n 2 --dist loadgroup --no-loadscope-reorder` (pyproject's addopts) a module is
    the unit a worker takes, so its module-scoped fixtures are built once, and workers take
    the modules in collection order: longest first, so that no long module starts last
    and runs alone at the end. Tests that look at the machine's processes look only at their
    own (their process tree, their scratch root), so they need no worker of their own."""
    for item in items:
        item.add_marker(pytest.mark.xdist_group(item.path.stem))
    # sort is stable: a module's tests keep their order
    items.sort(key=lambda item: -DURATIONS.get(item.path.stem, 0))
