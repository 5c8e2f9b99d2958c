"""Fuzzing `scientist web` (issue 17): Hypothesis properties of the chart and tick code over
arbitrary floats (NaN, infinities, equal, ulps apart, huge, subnormal), and a Schemathesis
run of every route in the app's OpenAPI schema, with generated valid and invalid inputs,
against test_web_hardening's archive (broken rows included): no response may be a 500 or
take longer than MAX_SECONDS. Seeds are fixed (derandomize) so CI runs the same inputs."""

import math
import re
import time

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_web import LOCAL
from test_web_hardening import build_hostile_archive

from archive.reads import GenerationStat, Progression
from scientist.web.app import create_app
from scientist.web.charts import curves_chart, generation_chart, interval_chart, nice_ticks
from scientist.web.engine import reader_engine

MAX_SECONDS = 2.0  # no page of a small archive may take longer, whatever the request
CHART_EXAMPLES = 50
ROUTE_EXAMPLES = 25  # per operation (GET and HEAD of each route), besides the boundary cases
FLOATS = st.floats(allow_nan=True, allow_infinity=True)
FINITE = st.floats(allow_nan=False, allow_infinity=False)
# An SVG coordinate or length attribute, and a polyline's points.
NUMBER_ATTRIBUTE = re.compile(r'\b(?:x|y|x1|x2|y1|y2|cx|cy|width|height)="([^"]*)"')
POINTS = re.compile(r'points="([^"]*)"')
CHARTS = settings(max_examples=CHART_EXAMPLES, deadline=None, derandomize=True)


def near(value: float) -> st.SearchStrategy[float]:
    """Floats a few ulps from `value`: what averaging equal values gives."""
    return st.integers(-4, 4).map(lambda k: value + k * math.ulp(value))


# Ranges of every kind: arbitrary, equal, ulps apart, opposite and huge.
RANGES = st.one_of(
    st.tuples(FLOATS, FLOATS),
    FINITE.map(lambda v: (v, v)),
    FINITE.flatmap(lambda v: st.tuples(near(v), near(v))),
    st.floats(1e300, 1.7976931348623157e308).map(lambda v: (-v, v)),
)


def assert_finite_svg(svg) -> None:
    numbers = [float(v) for v in NUMBER_ATTRIBUTE.findall(svg)]
    numbers += [float(v) for p in POINTS.findall(svg) for v in re.split(r"[ ,]", p)]
    assert numbers and all(math.isfinite(v) for v in numbers)


@CHARTS
@given(RANGES, st.integers(1, 12))
def test_ticks_are_few_finite_and_cover_the_range(bounds, count):
    low, high = bounds
    ticks = nice_ticks(low, high, count)
    assert len(ticks) <= count + 2
    assert all(math.isfinite(t) for t in ticks)
    assert ticks == sorted(set(ticks))
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        return
    assert ticks, "a finite range has a tick"
    if len(ticks) == 1:  # ulps apart, or one step wider than the range: one tick, inside
        slack = (high / 2 - low / 2) * 1e-8
        assert low - slack <= ticks[0] <= high + slack
        return
    step = ticks[1] - ticks[0]
    slack = step * 1e-3
    assert low - slack <= ticks[0] <= low + step + slack
    assert high - step - slack <= ticks[-1] <= high + slack


@CHARTS
@given(st.lists(st.lists(st.none() | FLOATS, max_size=30), min_size=1, max_size=4))
def test_learning_curves_of_any_values_are_finite_svg(curves):
    svg = curves_chart([(f"env {i}", values) for i, values in enumerate(curves)])
    if svg is not None:
        assert_finite_svg(svg)


@CHARTS
@given(st.lists(st.tuples(FLOATS, FLOATS, FLOATS), min_size=1, max_size=8))
def test_score_intervals_of_any_values_are_finite_svg(rows):
    svg = interval_chart([(f"row {i}", *row) for i, row in enumerate(rows)])
    if svg is not None:
        assert_finite_svg(svg)


@CHARTS
@given(
    st.lists(st.tuples(st.integers(0, 2**63 - 1), FINITE, FINITE), min_size=1, max_size=12),
    st.lists(st.tuples(st.integers(0, 2**63 - 1), FLOATS | st.none()), max_size=6),
)
def test_generation_charts_of_any_values_are_finite_svg(generations, es):
    stats = [GenerationStat(g, 3, best, mean) for g, best, mean in generations]
    points = [(g, best, i) for i, (g, best, _) in enumerate(generations)]
    svg = generation_chart(Progression(stats, points, es=[(g, b, b) for g, b in es]))
    assert_finite_svg(svg)


# -- the HTTP interface, from its OpenAPI schema ----------------------------------------------


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """The app on test_web_hardening's archive, and that archive's ids."""
    root = tmp_path_factory.mktemp("fuzz")
    ids = build_hostile_archive(root)
    app = create_app(reader_engine(f"sqlite:///{root / 'archive.db'}"), root / "landscapes")
    return app, ids


@pytest.fixture(scope="module")
def web_schema(hostile):
    schema = schemathesis.openapi.from_asgi(
        "/openapi.json", hostile[0], headers={"host": "127.0.0.1"}
    )
    schema.config.generation.update(modes=["positive", "negative"], deterministic=True)
    schema.config.checks.update(
        included_check_names=["not_a_server_error", "max_response_time"],
        max_response_time=MAX_SECONDS,
    )
    return schema


schema = schemathesis.pytest.from_fixture("web_schema")


@schema.parametrize()
@settings(
    max_examples=ROUTE_EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_every_route_answers_any_input_without_a_500_in_time(case):
    case.call_and_validate(base_url=LOCAL)


# Generated ids rarely name a row of a small archive; these requests name real ones (broken
# rows included) with generated query strings.
PAGES = (
    "/campaigns/{c}",
    "/candidates/{i}",
    "/candidates/{i}/code.py",
    "/candidates/{i}/drift.png",
)
QUERY_TEXT = st.text(max_size=30) | st.integers(-(2**70), 2**70).map(str)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(data=st.data())
def test_pages_of_real_rows_with_any_query_answer_in_time(hostile, data):
    app, archive_ids = hostile
    client = TestClient(app, base_url=LOCAL, raise_server_exceptions=False)
    ids = sorted(set(all_ids(archive_ids)))
    params = data.draw(
        st.dictionaries(st.sampled_from(["page", "sort", "order", "status", "ids"]), QUERY_TEXT)
    )
    chosen = data.draw(st.lists(st.sampled_from(ids), min_size=1, max_size=10))
    separator = data.draw(st.sampled_from([",", " , ", "&ids="]))
    url = data.draw(
        st.sampled_from(PAGES).map(lambda p: p.format(c=1 + chosen[0] % 4, i=chosen[0]))
        | st.just("/compare?ids=" + separator.join(map(str, chosen)))
    )
    started = time.perf_counter()
    response = client.get(url, params=params if "compare" not in url else None)
    assert response.status_code < 500, (url, params, response.text[-500:])
    assert time.perf_counter() - started < MAX_SECONDS


def all_ids(found) -> list[int]:
    """Every id in build_hostile_archive's answer (ints, lists and dicts of them)."""
    if isinstance(found, int):
        return [found]
    values = found.values() if isinstance(found, dict) else found
    return [i for v in values for i in all_ids(v)]
