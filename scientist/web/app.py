"""The web app: routes, one read-only session per request, pages rendered from templates."""

import sandbox  # noqa: F401  (XLA flags, should anything below ever import jax)

# isort: split

import math
from collections.abc import Callable, Iterator
from pathlib import Path

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader
from sqlalchemy import Engine
from sqlmodel import Session
from starlette.exceptions import HTTPException as StarletteHTTPException

from archive import reads
from archive.schema import Campaign, Candidate
from sandbox.checks.report import assurance_of
from sandbox.landscape import Landscape, LandscapeError
from sandbox.vocabulary import Assurance, Origin, Sandbox, Status
from scientist.web import charts, queries
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
) -> FastAPI:
    """The archive browser over `engine` (give it a read-only one: scientist.web.engine).
    With compute_landscapes, missing drift landscapes are computed by the sandbox
    (`sandbox_backend`: auto, process or docker) in a background thread; `compute` is that
    call (tests replace it)."""
    app = FastAPI(title="rl-scientist archive", docs_url=None, redoc_url=None, openapi_url=None)
    cache = LandscapeCache(cache_dir)
    worker = LandscapeWorker(cache, sandbox_backend, compute) if compute_landscapes else None
    memo, child_index = queries.Memo(), queries.ChildIndex()
    templates = _templates()
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    def session() -> Iterator[Session]:
        # Nothing is ever committed: the session's transaction is rolled back when it closes.
        with Session(engine) as s:
            yield s

    def page(request: Request, name: str, **context) -> HTMLResponse:
        return templates.TemplateResponse(
            request,
            name,
            {"compute_landscapes": compute_landscapes, "cache_dir": str(cache_dir), **context},
        )

    @app.middleware("http")
    async def read_only(request: Request, call_next):
        if request.method != "GET":
            return PlainTextResponse(
                "this archive browser is read-only: GET only\n",
                status_code=405,
                headers={"Allow": "GET"},
            )
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response

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

    @app.get("/", response_class=HTMLResponse)
    def campaigns(request: Request, s: Session = Depends(session)):
        return page(request, "campaigns.html", summaries=queries.campaign_summaries(s, memo))

    @app.get("/campaigns/{campaign_id}", response_class=HTMLResponse)
    def campaign(
        request: Request,
        campaign_id: int,
        page_number: int = Query(1, alias="page", ge=1, le=10**7),
        sort: str = "fitness",
        order: str = "desc",
        status: str = Query(Status.OK, max_length=40),
        s: Session = Depends(session),
    ):
        c = _found(s.get(Campaign, campaign_id), f"no campaign {campaign_id} in this archive")
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
            events=reads.events(s, c.id, EVENTS)[::-1],
        )

    @app.get("/candidates/{candidate_id}", response_class=HTMLResponse)
    def candidate(request: Request, candidate_id: int, s: Session = Depends(session)):
        c = _found(s.get(Candidate, candidate_id), f"no candidate {candidate_id} in this archive")
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
            campaign=s.get(Campaign, c.campaign_id),
            failed_stage=failed_stage,
            code=python_html(c.code) if c.code else None,
            diff=diff,
            parent_has_code=parent_code is not None,
            ancestors=queries.rows_by_id(s, reads.lineage(s, c.id, MAX_ANCESTORS + 1)[1:]),
            children=queries.rows_by_id(s, children[:MAX_CHILDREN]),
            children_total=len(children),
            splits=_splits(c.per_env),
            curves=_curve_charts(c.per_env),
            intervals=charts.interval_chart(_interval_rows(c.per_env)),
            checks=_checks(c.checks),
            assurance=assurance_of(c.checks),
            calls=reads.calls_of(s, c.id),
            landscape=heatmap_view(cache, worker, c.task, c.code_hash, c.code),
        )

    @app.get("/candidates/{candidate_id}/drift.png")
    def drift_png(candidate_id: int, s: Session = Depends(session)):
        c = _found(s.get(Candidate, candidate_id), f"no candidate {candidate_id} in this archive")
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

    @app.get("/candidates/{candidate_id}/code.py")
    def code_text(candidate_id: int, s: Session = Depends(session)):
        c = _found(s.get(Candidate, candidate_id), f"no candidate {candidate_id} in this archive")
        if c.code is None:
            raise HTTPException(404, f"candidate {candidate_id} has no code")
        return PlainTextResponse(
            c.code, headers={"Content-Disposition": f'inline; filename="candidate_{c.id}.py"'}
        )

    @app.get("/compare", response_class=HTMLResponse)
    def compare(request: Request, s: Session = Depends(session)):
        ids = _compare_ids(request.query_params.getlist("ids"))
        found = reads.candidates_by_id(s, ids)
        missing = [i for i in ids if i not in found]
        if missing:
            raise HTTPException(
                404, "no candidate " + ", ".join(map(str, missing)) + " in this archive"
            )
        chosen = [found[i] for i in ids]
        first = chosen[0]
        columns = [
            {
                "c": c,
                "campaign": s.get(Campaign, c.campaign_id),
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
        scores = {
            c.id: {(split, env): r for split, env, r in _env_results(c.per_env)} for c in chosen
        }
        rows = [
            (f"#{c.id} {env}", *_interval(scores[c.id].get((split, env))))
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
        )

    @app.get("/pygments.css")
    def pygments_css():
        return Response(
            stylesheet(), media_type="text/css", headers={"Cache-Control": "max-age=86400"}
        )

    return app


def _found(row, message: str):
    if row is None:
        raise HTTPException(404, message)
    return row


def _compare_ids(values: list[str]) -> list[int]:
    ids: list[int] = []
    for part in (p.strip() for value in values for p in value.split(",")):
        if not part:
            continue
        if not part.isdigit() or len(part) > 18:
            raise HTTPException(400, f"candidate ids are numbers, not {part[:40]!r}")
        if int(part) not in ids:
            ids.append(int(part))
    if not 2 <= len(ids) <= MAX_COMPARE:
        raise HTTPException(400, f"compare two to {MAX_COMPARE} candidates: /compare?ids=1,2,3")
    return ids


# -- the archive's JSON columns, read defensively (old rows, partial evaluations) ---------------


def _number(value) -> float | None:
    return (
        float(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        else None
    )


def _env_results(per_env) -> list[tuple[str, str, dict]]:
    out = []
    for split, envs in (per_env or {}).items() if isinstance(per_env, dict) else ():
        for env, result in (envs or {}).items() if isinstance(envs, dict) else ():
            if isinstance(result, dict):
                out.append((str(split), str(env), result))
    return out


def _interval(result: dict | None) -> tuple[float | None, float | None, float | None]:
    normalised = (result or {}).get("normalised") or {}
    return (
        _number(normalised.get("iqm")),
        _number(normalised.get("ci_low")),
        _number(normalised.get("ci_high")),
    )


def _splits(per_env) -> list[dict]:
    rows = []
    for split, env, result in _env_results(per_env):
        iqm, low, high = _interval(result)
        scores = (result.get("normalised") or {}).get("scores") or []
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
    checks = (report or {}).get("checks") if isinstance(report, dict) else None
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
