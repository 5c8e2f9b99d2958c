"""`scientist web` against hostile input (issue 17, findings 1, 4 and 5): charts of values
within an ulp of each other, foreign Host headers, ids beyond 64 bits, Unicode digits, huge
id lists, malformed values in the archive's columns, and HEAD. One archive for the module:
test_web's demo campaign, a campaign whose three candidates all score 0.1 (SQLite's avg of
them is 0.10000000000000002), and candidates whose stored JSON and dates are broken."""

import math
import sqlite3
import time
from pathlib import Path

import anyio
import pytest
from fastapi.testclient import TestClient
from test_web import FILLER, LOCAL, build_archive, ok

from archive import writes
from archive.db import open_engine, transaction
from archive.schema import Campaign
from scientist.web.app import _hostless, create_app
from scientist.web.charts import curves_chart, generation_chart, interval_chart, nice_ticks
from scientist.web.engine import reader_engine

FLAT_FITNESS = 0.1
# column -> a stored value the archive's writers never produce
BROKEN = {
    "stages": "{not json",
    "per_env": "[1, 2]",
    "inspiration_ids": '{"a": 1}',
    "created_at": "yesterday",
    "evaluated_at": "12",
    "checks": "[1, 2]",
}
# per_env that is a dict, holding values of the wrong kinds
ODD_SCORES = '{"meta_train": {"CartPole-v1": {"normalised": [1], "learning_curve": "x"}}, "x": 3}'


def build_hostile_archive(root: Path) -> dict:
    """test_web's archive, plus campaign `flat` (three candidates of equal fitness) and one
    candidate per entry of BROKEN with that column overwritten, and one with all of them."""
    path = root / "archive.db"
    ids = build_archive(path, root / "EXECUTED", fillers=5)
    engine = open_engine(f"sqlite:///{path}")
    with transaction(engine) as s:
        flat = Campaign(
            name="flat", task="mirror_drift", budget="smoke", proposer="mutation", config={}
        )
        s.add(flat)
        s.flush()
        ids["flat"] = flat.id
        for k in range(3):
            c = writes.add_candidate(
                s,
                flat,
                code=FILLER.format(c=100 + k),
                origin="mutation",
                operator="mutate",
                island=0,
                generation=1,
            )
            writes.record_evaluation(s, c.id, ok(FLAT_FITNESS, FLAT_FITNESS, k))
    engine.dispose()
    fillers = ids["fillers"]
    ids["broken"] = dict(zip(BROKEN, [ids["child"], ids["hostile"], *fillers]))
    ids["all_broken"], ids["odd_scores"] = ids["grandchild"], fillers[-1]
    with sqlite3.connect(path) as db:  # bytes no writer of the archive would store
        db.execute("UPDATE candidate SET per_env = ? WHERE id = ?", (ODD_SCORES, fillers[-1]))
        for column, value in BROKEN.items():
            db.execute(
                f"UPDATE candidate SET {column} = ? WHERE id IN (?, ?)",
                (value, ids["broken"][column], ids["all_broken"]),
            )
    return ids


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    return root, build_hostile_archive(root)


@pytest.fixture(scope="module")
def client(archive):
    engine = reader_engine(f"sqlite:///{archive[0] / 'archive.db'}")
    app = create_app(engine, archive[0] / "landscapes")
    return TestClient(app, base_url=LOCAL, raise_server_exceptions=False)


# -- finding 1: charts terminate --------------------------------------------------------------


@pytest.mark.timeout(10)
def test_a_campaign_whose_candidates_score_the_same_renders(client, archive):
    response = client.get(f"/campaigns/{archive[1]['flat']}")
    assert response.status_code == 200
    assert '<svg class="chart"' in response.text


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "values",
    [
        [0.1, 0.10000000000000002],
        [1e300, 1e300],
        [-1.7e308, 1.7e308],
        [5e-324, 1e-323],
        [0.0, math.nan, math.inf],
    ],
)
def test_charts_of_extreme_values_are_finite_svg(values):
    for svg in (
        curves_chart([("x", values)]),
        interval_chart([("x", v, v, v) for v in values]),
    ):
        assert svg.startswith("<svg") and "nan" not in svg and "inf" not in svg
    ticks = nice_ticks(min(values), max(values))
    assert len(ticks) <= 7 and all(math.isfinite(t) for t in ticks)


def test_generation_chart_of_one_huge_generation():
    from archive.reads import GenerationStat, Progression

    svg = generation_chart(Progression([GenerationStat(1, 3, 1e300, 1e300)], None))
    assert "nan" not in svg


# -- finding 4: foreign Host headers ----------------------------------------------------------


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "127.0.0.1.evil.example"])
def test_a_foreign_host_is_refused(client, host):
    response = client.get("/", headers={"host": host})
    assert response.status_code == 400
    assert host not in response.text


@pytest.mark.parametrize("host", ["127.0.0.1:8000", "localhost:8000", "[::1]:8000", "localhost"])
def test_local_hosts_are_served(client, host):
    assert client.get("/", headers={"host": host}).status_code == 200


def test_the_configured_host_is_served(archive):
    engine = reader_engine(f"sqlite:///{archive[0] / 'archive.db'}")
    app = create_app(engine, archive[0] / "landscapes", host="archive.lan")
    served = TestClient(app, base_url="http://archive.lan:8000")
    assert served.get("/").status_code == 200
    assert served.get("/", headers={"host": "evil.example"}).status_code == 400


def test_redirects_name_no_host(client, archive):
    response = client.get(f"/campaigns/{archive[1]['flat']}/", follow_redirects=False)
    assert response.is_redirect
    assert response.headers["location"] == f"/campaigns/{archive[1]['flat']}"


@pytest.mark.parametrize(
    "location", ["http://evil.example//evil.example/a?b=1", "//evil.example/a?b=1", "/a?b=1"]
)
def test_a_redirect_target_is_a_path_on_this_site(location):
    assert _hostless(location) in ("/evil.example/a?b=1", "/a?b=1")


# -- finding 5: ids, id lists, stored values, HEAD --------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "/campaigns/9223372036854775808",
        "/campaigns/-9223372036854775809",
        "/candidates/18446744073709551616",
        "/candidates/-1",
        "/candidates/0/code.py",
        "/candidates/99999999999999999999/drift.png",
    ],
)
def test_ids_beyond_64_bits_are_404(client, url):
    assert client.get(url).status_code == 404


@pytest.mark.parametrize("ids", ["1,²", "١,٢", "1,9223372036854775808", "-1,2", "1,0"])
def test_compare_refuses_ids_that_are_not_archive_ids(client, ids):
    assert client.get(f"/compare?ids={ids}").status_code == 400


def asgi_get(app, path: str, query: str) -> int:
    """The status of a GET sent straight to the app: an HTTP client refuses URLs this long,
    a server need not."""
    sent = []

    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query.encode(),
        "headers": [(b"host", b"127.0.0.1:8000")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    anyio.run(app, scope, receive, send)
    return next(m["status"] for m in sent if m["type"] == "http.response.start")


@pytest.mark.parametrize("separator", [",", "&ids="])
def test_compare_refuses_thousands_of_ids_cheaply(client, separator):
    query = "ids=" + separator.join(map(str, range(1, 23_001)))
    started = time.process_time()
    assert asgi_get(client.app, "/compare", query) == 400
    assert time.process_time() - started < 0.5


def test_compare_ids_repeated_are_one(client, archive):
    ids = archive[1]
    response = client.get(f"/compare?ids={ids['ppo']},{ids['dpo']},{ids['ppo']}")
    assert response.status_code == 200
    assert response.text.count('class="highlighttable"') == 2


@pytest.mark.parametrize("column", sorted(BROKEN))
def test_a_malformed_stored_value_is_reported_not_a_500(client, archive, column):
    candidate = archive[1]["broken"][column]
    response = client.get(f"/candidates/{candidate}")
    assert response.status_code == 200
    assert f"could not read {column}" in response.text
    assert f"#{candidate}" in response.text  # the rest of the page is there


def test_scores_of_the_wrong_kinds_inside_per_env_are_left_out(client, archive):
    ids = archive[1]
    response = client.get(f"/candidates/{ids['odd_scores']}")
    assert response.status_code == 200
    assert "<td>CartPole-v1</td>" in response.text  # the environment's row, without scores
    compared = client.get(f"/compare?ids={ids['ppo']},{ids['odd_scores']}")
    assert compared.status_code == 200
    assert "<th>meta_train CartPole-v1</th>" in compared.text


def test_every_page_of_a_candidate_with_every_value_malformed(client, archive):
    ids = archive[1]
    broken = ids["all_broken"]
    for url in (
        f"/candidates/{broken}",
        f"/candidates/{broken}/code.py",
        f"/candidates/{broken}/drift.png",
        f"/compare?ids={broken},{ids['broken']['per_env']},{ids['ppo']}",
        "/campaigns/1",
        "/",
    ):
        assert client.get(url).status_code in (200, 404), url
    html = client.get(f"/candidates/{broken}").text
    assert all(f"could not read {column}" in html for column in BROKEN)


@pytest.mark.parametrize("url", ["/", "/campaigns/1", "/candidates/1", "/compare?ids=1,2"])
def test_head_is_answered_like_get(client, url):
    head, get = client.head(url), client.get(url)
    assert head.status_code == get.status_code == 200
    assert head.headers["content-type"] == get.headers["content-type"]
    assert head.content == b""
