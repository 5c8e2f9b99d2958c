"""Issue 26: bad input ends in one line, never a traceback, on the trusted side.

Numeric literals no float64 holds (a 400-digit integer, 1e400, a 5,000-digit hex integer)
are "not an expression" to every parser and formatter of candidate code, are refused by
the static check by line, and a stored candidate holding one (or a stored score with 400
digits) still gets its page and its report. Integers a command hands to SQL or numpy are
bounded: out of range is typer's usage error (exit 2) and the archive is left as it was.
An output path of the wrong kind is a usage error too."""

import hashlib
import sqlite3
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from test_web import LOCAL, build_archive, ok
from typer.testing import CliRunner

from archive import writes
from archive.db import open_engine, transaction
from archive.fingerprint import code_hash
from archive.schema import Campaign
from sandbox import expressions as ex
from sandbox import formulas
from sandbox.checks.static import MAX_INT_LITERAL, check_source
from sandbox.training.bytecode import expression_bytecode
from scientist.cli import app
from scientist.commands.options import MAX_AT_ONCE, MAX_COUNT, MAX_ID, MAX_SEED
from scientist.web.app import create_app
from scientist.web.engine import reader_engine

INPUTS = ("ratio", "advantage")
DIGITS_400 = "1" + "0" * 399
HUGE_LITERALS = {
    "400 digits": DIGITS_400,
    "1e400": "1e400",
    "hex over python's 4300-digit limit": "0x" + "f" * 5_000,
}


def drift_with(literal: str) -> str:
    return f"def drift(ratio, advantage):\n    return 0.0 * ratio + {literal} * 0.0\n"


# -- parsers and formatters of candidate code -----------------------------------------------


@pytest.mark.parametrize("literal", HUGE_LITERALS.values(), ids=HUGE_LITERALS.keys())
def test_a_literal_beyond_float64_is_not_an_expression(literal):
    source = drift_with(literal)
    assert ex.parse_module(source, "drift", INPUTS) is None
    assert ex.parse_function(source, "drift", INPUTS) is None
    assert ex.parse_expression(f"{literal} * ratio", INPUTS) is None
    assert formulas.of_source(source, "drift", INPUTS) is None
    assert expression_bytecode(source, "drift", INPUTS) is None
    assert len(code_hash(source)) == 64  # the archive's fingerprint of any code


def test_large_finite_literals_still_parse():
    tree = ex.parse_module(drift_with("1e308"), "drift", INPUTS)
    assert tree is not None and ex.Const(1e308) in [n for _, n in ex.walk(tree)]
    assert ex.parse_expression(f"{2**64} * ratio", INPUTS) is not None


@pytest.mark.parametrize("literal", HUGE_LITERALS.values(), ids=HUGE_LITERALS.keys())
def test_the_static_check_names_the_line_of_a_huge_literal(literal):
    source = "import jax.numpy as jnp\n\n\n" + drift_with(literal)
    violations = check_source(source)
    assert [v.line for v in violations] == [5], violations
    assert "\n" not in str(violations[0]) and len(str(violations[0])) < 100


@pytest.mark.parametrize("value", [MAX_INT_LITERAL, -MAX_INT_LITERAL, 1.7e308, 1e-320, 3j])
def test_the_static_check_allows_literals_within_float64(value):
    assert check_source(f"def drift(ratio, advantage):\n    return {value!r} * ratio\n") == []


@pytest.mark.parametrize("value", [MAX_INT_LITERAL + 1, -(MAX_INT_LITERAL + 1)])
def test_the_static_check_refuses_integers_beyond_2_to_the_64(value):
    (violation,) = check_source(f"def drift(ratio, advantage):\n    return {value} * ratio\n")
    assert violation.line == 2 and "2**64" in violation.message


# -- a stored candidate with a huge literal: its page, its report -----------------------------


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """test_web's archive, with the best candidate's code holding a 400-digit literal and
    another candidate's stored return a 400-digit integer (JSON holds any number)."""
    root = tmp_path_factory.mktemp("limits")
    path = root / "archive.db"
    ids = build_archive(path, root / "EXECUTED", fillers=2)
    engine = open_engine(f"sqlite:///{path}")
    with transaction(engine) as s:
        campaign = s.get(Campaign, 1)
        huge = writes.add_candidate(
            s,
            campaign,
            code="import jax.numpy as jnp\n\n\n" + drift_with(DIGITS_400),
            origin="mutation",
            operator="mutate",
            island=0,
            generation=2,
            parent_id=ids["ppo"],
        )
        writes.record_evaluation(s, huge.id, ok(1.5, 1.4, 5))
    engine.dispose()
    ids["huge_literal"] = huge.id
    db = sqlite3.connect(path)
    with db:
        (stored,) = db.execute(
            "SELECT per_env FROM candidate WHERE id = ?", (ids["child"],)
        ).fetchone()
        stored = stored.replace('"return_iqm": ', f'"return_iqm": {DIGITS_400}, "was": ', 1)
        db.execute("UPDATE candidate SET per_env = ? WHERE id = ?", (stored, ids["child"]))
    db.close()
    return path, ids


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cli(*args, **env):
    # Wide enough that typer's error box holds its message on one line.
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "1000", **env})


def test_pages_of_huge_numbers_are_not_500(archive):
    path, ids = archive
    client = TestClient(
        create_app(reader_engine(f"sqlite:///{path}")),
        base_url=LOCAL,
        raise_server_exceptions=False,
    )
    huge, child = ids["huge_literal"], ids["child"]
    for url in (f"/candidates/{huge}", f"/candidates/{child}", f"/compare?ids={huge},{child}"):
        response = client.get(url)
        assert response.status_code == 200, (url, response.text[-2000:])
    page = client.get(f"/candidates/{huge}").text
    assert DIGITS_400 in page and "<math" not in page  # shown as source, with no formula
    assert client.get(f"/candidates/{huge}/code.py").text.count(DIGITS_400) == 1


def test_the_report_of_a_huge_literal_shows_it_as_code(archive, tmp_path):
    path, ids = archive
    before = digest(path)
    result = cli(
        "report", "demo", "--db", f"sqlite:///{path}", "--out", tmp_path, "--format", "md",
        "--no-landscapes",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    report = (tmp_path / "report-demo.md").read_text()
    assert f"#{ids['huge_literal']}" in report and DIGITS_400 in report
    assert digest(path) == before


# -- bounded command-line integers --------------------------------------------------------------

BEYOND_64_BITS = "99999999999999999999999"
# arguments -> the parameter typer's error names
OUT_OF_RANGE = {
    ("archive", "show", BEYOND_64_BITS): "candidate_id",
    ("archive", "show", "0"): "candidate_id",
    ("archive", "diff", "1", BEYOND_64_BITS): "second",
    ("archive", "list", "demo", "--top", BEYOND_64_BITS): "--top",
    ("archive", "list", "demo", "--top", MAX_COUNT + 1): "--top",
    ("status", "demo", "--top", "99999999999999999999"): "--top",
    ("status", "demo", "--top", "0"): "--top",
    ("resume", "demo", "--top", BEYOND_64_BITS): "--top",
    ("resume", "demo", "--workers", MAX_AT_ONCE + 1): "--workers",
    ("run", "--name", "x", "--seed", MAX_SEED + 1): "--seed",
    ("run", "--name", "x", "--generations", BEYOND_64_BITS): "--generations",
    ("distill", BEYOND_64_BITS, "--model", "m"): "ID",
    ("compare", "demo", "--seed", BEYOND_64_BITS): "--seed",
    ("compare", "demo", "--blocks", MAX_AT_ONCE + 1): "--blocks",
    ("es", "--name", "x", "--population", BEYOND_64_BITS): "--population",
    ("web", "--precompute", "demo", "--top", BEYOND_64_BITS): "--top",
    ("train", "--seed", BEYOND_64_BITS): "--seed",
    ("train", "--seeds", BEYOND_64_BITS): "--seeds",
    ("train", "--timesteps", BEYOND_64_BITS): "--timesteps",
    ("train", "--eval-seed", "-1"): "--eval-seed",
    ("calibrate", "--seeds", MAX_AT_ONCE + 1): "--seeds",
    ("plot", "drift", BEYOND_64_BITS, "--out", "x.png"): "ID|FILE",
    ("plot", "drift", "²", "--out", "x.png"): "ID|FILE",
    ("plot", "drift", str(MAX_ID + 1), "--out", "x.png"): "ID|FILE",
}


NO_ARCHIVE = ("train", "calibrate")  # commands without --db


def usage_error(result, parameter: str) -> None:
    """Exit 2 and typer's usage error: one error line, naming the parameter; no traceback."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and not isinstance(result.exception, OverflowError)
    errors = [line for line in result.output.splitlines() if "Invalid value" in line]
    assert len(errors) == 1 and parameter in errors[0], result.output


@pytest.mark.parametrize("args", OUT_OF_RANGE, ids=[" ".join(map(str, a)) for a in OUT_OF_RANGE])
def test_out_of_range_integers_are_usage_errors(archive, args, tmp_path):
    path, _ = archive
    before = digest(path)
    archive_option = () if args[0] in NO_ARCHIVE else ("--db", f"sqlite:///{path}")
    result = cli(*args, *archive_option)
    usage_error(result, OUT_OF_RANGE[args])
    assert digest(path) == before
    assert not (tmp_path / "x.png").exists()


def test_the_largest_id_is_in_range_and_simply_absent(archive):
    path, _ = archive
    result = cli("archive", "show", MAX_ID, "--db", f"sqlite:///{path}")
    assert result.exit_code == 2 and f"no candidate {MAX_ID}" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1


def test_report_into_an_existing_file_is_a_usage_error(archive, tmp_path):
    path, _ = archive
    existing = tmp_path / "notes.txt"
    existing.write_text("mine\n")
    before = digest(path)
    result = cli("report", "demo", "--db", f"sqlite:///{path}", "--out", existing)
    usage_error(result, "--out")
    assert existing.read_text() == "mine\n" and digest(path) == before


def test_a_figure_onto_a_folder_is_a_usage_error(archive, tmp_path):
    path, ids = archive
    result = cli("plot", "drift", ids["ppo"], "--db", f"sqlite:///{path}", "--out", tmp_path)
    usage_error(result, "--out")


def test_a_file_name_too_long_for_the_system_is_a_usage_error():
    result = cli("check", "a" * 5_000)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "file not found" in result.output


# -- web: ids beyond any archive ----------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        f"/candidates/{BEYOND_64_BITS}",
        f"/candidates/-{BEYOND_64_BITS}",
        f"/candidates/{BEYOND_64_BITS}/code.py",
        f"/campaigns/{BEYOND_64_BITS}",
        f"/candidates/{MAX_ID}",  # in range, not in the archive
        pytest.param(f"/candidates/1{'0' * 5_000}", id="beyond int()'s 4300 digits"),
    ],
)
def test_huge_ids_in_paths_are_404(archive, url):
    path, _ = archive
    client = TestClient(
        create_app(reader_engine(f"sqlite:///{path}")),
        base_url=LOCAL,
        raise_server_exceptions=False,
    )
    response = client.get(url)
    assert response.status_code == 404, response.text[-500:]


@pytest.mark.parametrize(
    "url",
    [
        f"/compare?ids=1,{BEYOND_64_BITS}",
        f"/compare?ids=-{BEYOND_64_BITS},1",
        "/campaigns/1?page=" + "9" * 30,
        "/campaigns/1?page=-" + "9" * 30,
    ],
)
def test_huge_numbers_in_queries_are_400(archive, url):
    path, _ = archive
    client = TestClient(
        create_app(reader_engine(f"sqlite:///{path}")),
        base_url=LOCAL,
        raise_server_exceptions=False,
    )
    assert client.get(url).status_code == 400
