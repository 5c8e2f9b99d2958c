"""The web app: routes, one read-only session per request, pages rendered from templates."""

import sandbox  # noqa: F401  (XLA flags, should anything below ever import jax)

# isort: split

import ipaddress
import math
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit, urlunsplit

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParameter
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader
from pydantic import StringConstraints
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware

from archive import readable, reads
from archive.db import Engine, Session, reading
from archive.schema import Campaign, Candidate
from sandbox.checks.report import assurance_of
from sandbox.fitness import too_few_for_interval
from sandbox.landscape import Landscape, LandscapeError
from sandbox.vocabulary import Assurance, Origin, Sandbox, Status
from scientist.search.paired import versus_baselines
from scientist.web import charts, queries
from scientist.web.formulas import formula_view
from scientist.web.highlight import diff_html, python_html, stylesheet, unified_diff
from scientist.web.landscapes import (
    DEFAULT_CACHE,
    HeatmapState,
    LandscapeCache,
    LandscapeWorker,
    cache_key,
    compute_in_sandbox,
    heatmap_view,
    is_drift_task,
)

HERE = Path(__file__).resolve().parent
MAX_COMPARE = 8
MAX_ID = 2**63 - 1  # the archive's ids are signed 64-bit integers, from 1
# An archive id in a path: anything else (letters, 2**63, -1) is no page here, a 404.
Id = Annotated[int, PathParameter(ge=1, le=MAX_ID, description="an archive id")]
# /compare?ids=1,2,3 or ids=1&ids=2: few short lists of ASCII digits, checked before any
# parsing, so a request of thousands of ids costs no more than one of two.
IdList = Annotated[str, StringConstraints(max_length=MAX_COMPARE * 24, pattern=r"^[0-9, ]*$")]
CompareIds = Annotated[
    list[IdList],
    Query(max_length=MAX_COMPARE, description="candidate ids, comma-separated or repeated"),
]
READ_METHODS = ("GET", "HEAD")
LOOPBACK = "127.0.0.1"
# Host headers a browser on this machine sends. Any other name (a DNS-rebinding page's
# domain, pointed at 127.0.0.1) is refused, so a hostile page cannot read the archive.
LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")
MAX_ANCESTORS = 200  # a lineage longer than this is cut (parent links could even form a loop)
MAX_CHILDREN = 200
EVENTS = 20  # the newest events a campaign page lists
SPLITS = ("meta_train", "meta_test")
# Pages show archive text (code, prompts, model replies): no script may run, whatever it holds.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; img-src 'self'; style-src 'self'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def create_app(
    engine: Engine,
    cache_dir: Path = DEFAULT_CACHE,
    compute_landscapes: bool = False,
    *,
    sandbox_backend: str = Sandbox.AUTO,
    compute: Callable[[str, str, str], Landscape] = compute_in_sandbox,
    host: str = LOOPBACK,
) -> FastAPI:
    """The archive browser over `engine` (give it a read-only one: scientist.web.engine).
    With compute_landscapes, missing drift landscapes are computed by the sandbox
    (`sandbox_backend`: auto, process or docker) in a background thread; `compute` is that
    call (tests replace it). `host` is the address it is served on: requests naming any
    host but that one and this machine's local names are refused. Its OpenAPI schema is at
    /openapi.json."""
    app = FastAPI(title="rl-scientist archive", docs_url=None, redoc_url=None)
    cache = LandscapeCache(cache_dir)
    worker = LandscapeWorker(cache, sandbox_backend, compute) if compute_landscapes else None
    memo, child_index = queries.Memo(), queries.ChildIndex()
    templates = _templates()
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    site = _Site(app, engine, templates, cache, worker, memo, child_index, compute_landscapes)
    _guard(app, templates, host)
    for add_pages in (_campaign_pages, _candidate_pages, _compare_pages):
        add_pages(site)
    return app


@dataclass(frozen=True)
class _Site:
    """What the pages share: the app, the archive, the templates and the caches."""

    app: FastAPI
    engine: Engine
    templates: Jinja2Templates
    cache: LandscapeCache
    worker: LandscapeWorker | None
    memo: queries.Memo
    child_index: queries.ChildIndex
    compute_landscapes: bool

    def session(self) -> Iterator[Session]:
        # Nothing is ever committed: the session's transaction is rolled back when it closes.
        with reading(self.engine) as s:
            yield s

    def page(self, request: Request, name: str, **context) -> HTMLResponse:
        return self.templates.TemplateResponse(
            request,
            name,
            {
                "compute_landscapes": self.compute_landscapes,
                "cache_dir": str(self.cache.directory),
                **context,
            },
        )

    def read(self, path: str, **options):
        """A page, answered to GET and (the same headers, no body) HEAD."""

        def register(endpoint):
            self.app.head(path, **options)(endpoint)
            return self.app.get(path, **options)(endpoint)

        return register


def _guard(app: FastAPI, templates: Jinja2Templates, host: str) -> None:
    """Read-only methods, security headers, trusted hosts and error pages."""

    @app.middleware("http")
    async def read_only(request: Request, call_next):
        if request.method not in READ_METHODS:
            return PlainTextResponse(
                "this archive browser is read-only: GET and HEAD only\n",
                status_code=405,
                headers={"Allow": ", ".join(READ_METHODS)},
            )
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        if "location" in response.headers:
            response.headers["location"] = _hostless(response.headers["location"])
        return response

    # Added last, so it runs first: a foreign Host gets nothing, not even a 404.
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=trusted_hosts(host), www_redirect=False)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException):
        return templates.TemplateResponse(
            request,
            "error.html",
            {"status": error.status_code, "detail": error.detail},
            status_code=error.status_code,
            headers=getattr(error, "headers", None),
        )

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, error: RequestValidationError):
        errors = error.errors()
        detail = "; ".join(
            f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg', '')}" for e in errors
        )
        status = (
            404 if any(e.get("loc", ("",))[0] == "path" for e in errors) else 400
        )  # /candidates/abc: no such page
        return templates.TemplateResponse(
            request, "error.html", {"status": status, "detail": detail}, status_code=status
        )


def _campaign_pages(site: _Site) -> None:
    read, page, session = site.read, site.page, site.session
    memo = site.memo

    @read("/", response_class=HTMLResponse)
    def campaigns(request: Request, s: Session = Depends(session)):
        summaries = queries.campaign_summaries(s, memo)
        return page(
            request,
            "campaigns.html",
            summaries=summaries,
            unreadable=[note for summary in summaries for note in summary.notes],
        )

    @read("/campaigns/{campaign_id}", response_class=HTMLResponse)
    def campaign(
        request: Request,
        campaign_id: Id,
        page_number: int = Query(1, alias="page", ge=1, le=10**7),
        sort: str = "fitness",
        order: str = "desc",
        status: str = Query(Status.OK, max_length=40),
        s: Session = Depends(session),
    ):
        found = _found(
            readable.row(s, Campaign, campaign_id), f"no campaign {campaign_id} in this archive"
        )
        c, events = found.row, readable.events(s, campaign_id, EVENTS)
        sort = sort if sort in queries.SORTS else "fitness"
        descending = order != "asc"
        counts = reads.status_counts(s, c.id)
        status = status if status in counts or status == Status.OK else Status.OK
        board = queries.leaderboard(
            s, memo, c.id, counts, status=status, sort=sort, descending=descending, page=page_number
        )
        islands = queries.island_stats_memo(s, memo, c.id, counts)
        best_id, best_fitness = reads.best_of(islands)
        progression = queries.progression(s, memo, c.id, counts)
        return page(
            request,
            "campaign.html",
            campaign=c,
            counts=counts,
            board=board,
            sort=sort,
            order="desc" if descending else "asc",
            status=status,
            islands=islands,
            best_id=best_id,
            best_fitness=best_fitness,
            chart=charts.generation_chart(progression),
            progression=progression,
            migrants=queries.migrants(s, memo, c.id),
            spending=queries.spending(s, memo, c.id),
            compute=queries.compute_spent(s, memo, c.id, counts),
            events=[e.row for e in events],
            unreadable=readable.notes_of([found, *events]),
        )


def _candidate_pages(site: _Site) -> None:
    read, page, session = site.read, site.page, site.session
    cache, worker, child_index = site.cache, site.worker, site.child_index

    @read("/candidates/{candidate_id}", response_class=HTMLResponse)
    def candidate(request: Request, candidate_id: Id, s: Session = Depends(session)):
        found = _candidate(s, candidate_id)
        c = found.row
        campaign, calls = readable.row(s, Campaign, c.campaign_id), readable.calls(s, c.id)
        children = child_index.of(s, c.id)
        parent_code = reads.code_of(s, c.parent_id) if c.parent_id is not None else None
        diff = None
        if c.code is not None and parent_code is not None:
            text = unified_diff(
                parent_code, c.code, f"candidate {c.parent_id}", f"candidate {c.id}"
            )
            diff = diff_html(text) if text else None
        failed_stage = next(
            (st for st in c.stages if isinstance(st, dict) and st.get("status") != Status.OK), None
        )
        return page(
            request,
            "candidate.html",
            c=c,
            campaign=_row_of(campaign),
            failed_stage=failed_stage,
            code=python_html(c.code) if c.code else None,
            formula=formula_view(c.task, c.code),
            diff=diff,
            parent_has_code=parent_code is not None,
            ancestors=readable.rows_by_id(s, reads.lineage(s, c.id, MAX_ANCESTORS + 1)[1:]),
            children=readable.rows_by_id(s, children[:MAX_CHILDREN]),
            children_total=len(children),
            splits=_splits(c.per_env),
            standing=_standing(s, c),
            curves=_curve_charts(c.per_env),
            intervals=charts.interval_chart(_interval_rows(c.per_env)),
            checks=_checks(c.checks),
            assurance=assurance_of(c.checks),
            calls=[k.row for k in calls],
            landscape=heatmap_view(cache, worker, c.task, c.code_hash, c.code),
            unreadable=readable.notes_of([found, campaign, *calls]),
        )

    @read("/candidates/{candidate_id}/drift.png")
    def drift_png(candidate_id: Id, s: Session = Depends(session)):
        c = _candidate(s, candidate_id).row
        digest = cache_key(c.code_hash)
        if digest is None or not is_drift_task(c.task) or not cache.has(digest):
            raise HTTPException(404, f"no landscape cached for candidate {candidate_id}")
        try:
            cache.sentences(
                digest
            )  # validates the npz (memoised per file) before its picture is served
            png = cache.png(digest)
        except (LandscapeError, OSError) as error:
            raise HTTPException(404, f"the cached landscape is invalid: {error}") from None
        return Response(png, media_type="image/png", headers={"Cache-Control": "max-age=3600"})

    @read("/candidates/{candidate_id}/code.py")
    def code_text(candidate_id: Id, s: Session = Depends(session)):
        c = _candidate(s, candidate_id).row
        if c.code is None:
            raise HTTPException(404, f"candidate {candidate_id} has no code")
        return PlainTextResponse(
            c.code, headers={"Content-Disposition": f'inline; filename="candidate_{c.id}.py"'}
        )


def _compare_pages(site: _Site) -> None:
    read, page, session = site.read, site.page, site.session
    cache, worker = site.cache, site.worker

    @read("/compare", response_class=HTMLResponse)
    def compare(request: Request, ids: CompareIds = [], s: Session = Depends(session)):
        ids = _compare_ids(ids)
        found = readable.candidates(s, ids)
        missing = [i for i in ids if i not in found]
        if missing:
            raise HTTPException(
                404, "no candidate " + ", ".join(map(str, missing)) + " in this archive"
            )
        chosen = [found[i].row for i in ids]
        campaigns = {i: readable.row(s, Campaign, i) for i in {c.campaign_id for c in chosen}}
        first = chosen[0]
        columns = [
            {
                "c": c,
                "campaign": _row_of(campaigns[c.campaign_id]),
                "code": python_html(c.code) if c.code else None,
                "heatmap": heatmap_view(cache, worker, c.task, c.code_hash, c.code),
                "diff": diff_html(
                    unified_diff(
                        first.code or "", c.code or "", f"candidate {first.id}", f"candidate {c.id}"
                    )
                    or "(identical code)\n"
                )
                if c is not first
                else None,
            }
            for c in chosen
        ]
        envs = sorted(
            {(split, env) for c in chosen for split, env, _ in _env_results(c.per_env)},
            key=lambda k: (SPLITS.index(k[0]) if k[0] in SPLITS else 9, k),
        )
        scores = {  # (iqm, ci_low, ci_high) per candidate and environment
            c.id: {(split, env): _interval(r) for split, env, r in _env_results(c.per_env)}
            for c in chosen
        }
        rows = [
            (f"#{c.id} {env}", *scores[c.id][split, env])
            for split, env in envs
            for c in chosen
            if (split, env) in scores[c.id]
        ]
        return page(
            request,
            "compare.html",
            columns=columns,
            envs=envs,
            scores=scores,
            intervals=charts.interval_chart(rows),
            unreadable=readable.notes_of([*(found[i] for i in ids), *campaigns.values()]),
        )

    @read("/pygments.css")
    def pygments_css():
        return Response(
            stylesheet(), media_type="text/css", headers={"Cache-Control": "max-age=86400"}
        )


def trusted_hosts(host: str) -> list[str]:
    """The Host headers to answer when serving on `host`: its own name (an IPv6 address in
    brackets, as a Host header spells it), this machine's local names and, when it listens
    on every interface, the machine's name and addresses."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return [host.lower(), *LOCAL_HOSTS]
    named = [f"[{address}]" if address.version == 6 else str(address), *LOCAL_HOSTS]
    return named + (_machine_names() if address.is_unspecified else [])


def _machine_names() -> list[str]:
    name = socket.gethostname()
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(name, None)}
    except OSError:  # a host name that does not resolve: the name alone
        addresses = set()
    return [name.lower(), *(f"[{a}]" if ":" in a else a for a in sorted(addresses))]


def _hostless(location: str) -> str:
    """A redirect's target as a path: the Host header it was built from is the client's word.
    Leading slashes are folded into one, or //evil.example/ would name another site."""
    url = urlsplit(location)
    return urlunsplit(("", "", "/" + url.path.lstrip("/"), url.query, url.fragment))


def _found(row, message: str):
    if row is None:
        raise HTTPException(404, message)
    return row


def _row_of(found):
    return found.row if found is not None else None


def _candidate(session: Session, candidate_id: int) -> readable.Readable[Candidate]:
    return _found(
        readable.row(session, Candidate, candidate_id),
        f"no candidate {candidate_id} in this archive",
    )


def _compare_ids(values: list[str]) -> list[int]:
    """Distinct ids, in the order given (the schema has already bounded their number and
    made them ASCII digits, commas and spaces, both separators): each an archive id, two to
    MAX_COMPARE of them."""
    parts = (p for value in values for p in value.replace(",", " ").split())
    ids = list(dict.fromkeys(map(int, parts)))
    outside = next((i for i in ids if not 1 <= i <= MAX_ID), None)
    if outside is not None:
        raise HTTPException(400, f"candidate ids are 1 to {MAX_ID}, not {outside}")
    if not 2 <= len(ids) <= MAX_COMPARE:
        raise HTTPException(400, f"compare two to {MAX_COMPARE} candidates: /compare?ids=1,2,3")
    return ids


# -- the archive's JSON columns, read defensively (old rows, partial evaluations) ---------------


def _number(value) -> float | None:
    """A stored number as a finite float; None for anything else (text, NaN, infinities, or
    an integer beyond float64: JSON holds any number of digits)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _env_results(per_env) -> list[tuple[str, str, dict]]:
    return [
        (str(split), str(env), result)
        for split, envs in _mapping(per_env).items()
        for env, result in _mapping(envs).items()
        if isinstance(result, dict)
    ]


def _mapping(value) -> dict:
    """A stored value that should be a dict, or an empty one (old or malformed rows)."""
    return value if isinstance(value, dict) else {}


def _interval(result: dict | None) -> tuple[float | None, float | None, float | None]:
    """IQM and interval; no interval at seed counts where its coverage is unchecked (an
    older archive stored one for 2 seeds)."""
    normalised = _mapping(_mapping(result).get("normalised"))
    scores = normalised.get("scores")
    low, high = _number(normalised.get("ci_low")), _number(normalised.get("ci_high"))
    if too_few_for_interval([len(scores) if isinstance(scores, list) else 0]):
        low = high = None
    return _number(normalised.get("iqm")), low, high


def _standing(s: Session, c: Candidate) -> dict | None:
    """The candidate's evaluation rounds (blocks of seeds) and its paired differences from
    PPO and DPO with the labels they earn; None for a baseline or an unscored candidate, or
    where the stored rounds cannot be read."""
    if c.origin == Origin.BASELINE or c.status != Status.OK:
        return None
    try:
        rounds = reads.rounds_of(s, [c.id])[c.id]
        paired = versus_baselines(s, [c]).get(c.id, [])
        return {
            "review": c.review,
            "fidelity": c.fidelity,
            "seeds": c.seeds,
            "rounds": [(r.block, r.training_seed, r.runs, r.status, r.fitness) for r in rounds],
            "versus": [(p.describe(3), p.label) for p in paired],
        }
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def _splits(per_env) -> list[dict]:
    rows = []
    for split, env, result in _env_results(per_env):
        iqm, low, high = _interval(result)
        scores = _mapping(result.get("normalised")).get("scores")
        rows.append(
            {
                "split": split,
                "env": env,
                "iqm": iqm,
                "ci_low": low,
                "ci_high": high,
                "return_iqm": _number(result.get("return_iqm")),
                "seeds": len(scores) if isinstance(scores, list) else 0,
            }
        )
    return rows


def _interval_rows(per_env) -> list[tuple[str, float | None, float | None, float | None]]:
    return [(f"{split} {env}", *_interval(result)) for split, env, result in _env_results(per_env)]


def _curve_charts(per_env) -> list[tuple[str, object]]:
    out = []
    for split, env, result in _env_results(per_env):
        curve = result.get("learning_curve")
        if isinstance(curve, list) and curve:
            chart = charts.curves_chart([(env, [_number(v) for v in curve])])
            if chart is not None:
                out.append((f"{split}: {env}", chart))
    return out


def _checks(report) -> list[dict]:
    checks = _mapping(report).get("checks")
    return [c for c in checks if isinstance(c, dict)] if isinstance(checks, list) else []


def _templates() -> Jinja2Templates:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = lambda v, digits=3: "—" if _number(v) is None else f"{v:.{digits}f}"
    env.filters["dollars"] = lambda v: f"${v:.4f}" if v else "$0"
    env.filters["when"] = lambda t: t.strftime("%Y-%m-%d %H:%M:%S") if t else "—"
    env.filters["clip"] = lambda text, width=80: (
        (text if len(text or "") <= width else text[: width - 1] + "…") if text else ""
    )
    env.filters["thousands"] = lambda n: f"{n:,}"
    env.globals.update(
        Status=Status, Origin=Origin, HeatmapState=HeatmapState, Assurance=Assurance
    )  # the vocabulary, not literals
    return Jinja2Templates(env=env)
