"""Reads for the web pages. Whole rows read column by column, for pages that must show
whatever the archive holds; lists of candidates read only the columns a table shows.

The ORM decodes a row's JSON and dates all at once, and one malformed value (a hand-edited
archive, a crashed writer, another program's rows) fails the whole row: a 500 for the page.
Here each such column is fetched as stored and decoded on its own; a value that does not
decode, or is not the kind its column holds (a list where a dict belongs), becomes the
column's empty value and a note that the page shows.
"""

import json
import typing
from dataclasses import dataclass
from typing import Generic, TypeVar

from sqlalchemy import JSON, DateTime, String, Text, cast, func, type_coerce
from sqlmodel import Session, SQLModel, col, select

from archive.schema import Campaign, Candidate, Event, LLMCall
from sandbox.vocabulary import Status

Row = TypeVar("Row", bound=SQLModel)


class Unreadable(ValueError):
    """A stored value that cannot be shown for what its column says it is."""


@dataclass(frozen=True)
class Readable(Generic[Row]):
    row: Row
    notes: tuple[str, ...] = ()  # "stages of candidate 4: not JSON (...)", one per bad column


def rows(
    session: Session, model: type[Row], *where, order_by=(), limit: int | None = None
) -> list[Readable[Row]]:
    """The rows of `model` matching `where`, in `order_by` order, at most `limit`."""
    columns = list(model.__table__.columns)
    query = select(*(_as_stored(c) for c in columns)).where(*where).order_by(*order_by)
    dialect = session.get_bind().dialect
    return [
        _row(model, columns, values, dialect)
        for values in session.exec(query.limit(limit) if limit is not None else query).all()
    ]


def row(session: Session, model: type[Row], key: int) -> Readable[Row] | None:
    """The row of `model` with primary key `key`, or None."""
    found = rows(session, model, model.__table__.primary_key.columns[0] == key)
    return found[0] if found else None


def notes_of(readables) -> list[str]:
    """Every note of these rows (None entries allowed), in order."""
    return [note for r in readables if r is not None for note in r.notes]


def _as_stored(column):
    """JSON as its text (the same on SQLite and PostgreSQL), dates as the driver gives them."""
    if isinstance(column.type, JSON):
        return cast(column, Text).label(column.name)
    if _is_date(column):
        return type_coerce(column, String).label(column.name)
    return column


def _row(model: type[Row], columns, values, dialect) -> Readable[Row]:
    fields, notes = {}, []
    for column, value in zip(columns, values):
        try:
            fields[column.name] = _decoded(model, column, value, dialect)
        except Unreadable as error:
            fields[column.name] = _empty(model, column)
            notes.append(f"{column.name} of {model.__tablename__} {fields.get('id', '?')}: {error}")
    return Readable(model(**fields), tuple(notes))


def _decoded(model: type[SQLModel], column, value, dialect):
    if value is None:
        return None
    if isinstance(column.type, JSON):
        return _json(value, _kind(model, column.name), column.nullable)
    if _is_date(column):
        return _date(column, value, dialect)
    return value


def _json(text: str, kind: type, nullable: bool):
    try:
        value = json.loads(text)
    except ValueError as error:
        raise Unreadable(f"not JSON ({error})") from None
    if not (isinstance(value, kind) or (value is None and nullable)):
        raise Unreadable(f"a JSON {type(value).__name__}, not a {kind.__name__}")
    return value


def _date(column, value, dialect):
    # The column type's own decoding, as the ORM would apply it, one value at a time.
    parse = column.type.dialect_impl(dialect).result_processor(dialect, None)
    try:
        return parse(value) if parse is not None else value
    except (ValueError, TypeError):
        raise Unreadable(f"not a date ({str(value)[:40]!r})") from None


def _is_date(column) -> bool:
    """A date column, plain or decorated (SQLModel's dates add a time zone on the way out)."""
    return isinstance(getattr(column.type, "impl_instance", column.type), DateTime)


def _kind(model: type[SQLModel], name: str) -> type:
    """The Python container a JSON column holds (list or dict), from the model's annotation."""
    annotation = model.model_fields[name].annotation
    return next(t for t in (*typing.get_args(annotation), annotation) if t in (list, dict))


def _empty(model: type[SQLModel], column):
    """What a column that could not be read shows: nothing, or an empty list or dict."""
    if column.nullable or _is_date(column):
        return None
    return _kind(model, column.name)()


# -- what the web pages read ------------------------------------------------------------------
def campaigns(session: Session) -> list[Readable[Campaign]]:
    """Every campaign, oldest first."""
    return rows(session, Campaign, order_by=[Campaign.id])


def candidates(session: Session, ids: list[int]) -> dict[int, Readable[Candidate]]:
    """The candidates with these ids (missing ones left out), by id."""
    found = rows(session, Candidate, col(Candidate.id).in_(ids)) if ids else []
    return {r.row.id: r for r in found}


def calls(session: Session, candidate_id: int) -> list[Readable[LLMCall]]:
    """The model calls that made a candidate, in the order they were made."""
    return rows(session, LLMCall, LLMCall.candidate_id == candidate_id, order_by=[LLMCall.id])


def events(session: Session, campaign_id: int, limit: int) -> list[Readable[Event]]:
    """The campaign's latest `limit` events, newest first."""
    return rows(
        session,
        Event,
        Event.campaign_id == campaign_id,
        order_by=[col(Event.id).desc()],
        limit=limit,
    )


# -- lists of candidates: only the columns a table row shows ------------------------------------
@dataclass(frozen=True)
class Row:
    """A candidate in a list: what a table row shows."""

    id: int
    status: str
    fitness: float | None
    meta_test_fitness: float | None
    origin: str
    operator: str
    baseline_name: str | None
    generation: int
    island: int
    parent_id: int | None
    model: str | None
    cost_usd: float
    note: str
    campaign_id: int
    seeds: int  # per environment, every evaluation round pooled
    review: str | None  # a Review: held for, or done with, elite re-evaluation


ROW_COLUMNS = (
    Candidate.id,
    Candidate.status,
    Candidate.fitness,
    Candidate.meta_test_fitness,
    Candidate.origin,
    Candidate.operator,
    Candidate.baseline_name,
    Candidate.generation,
    Candidate.island,
    Candidate.parent_id,
    Candidate.model,
    Candidate.cost_usd,
    func.substr(Candidate.proposal_note, 1, 160),
    Candidate.campaign_id,
    Candidate.seeds,
    Candidate.review,
)


def rows_by_id(session: Session, ids: list[int]) -> list[Row]:
    """Rows in the order of `ids` (missing ids left out)."""
    if not ids:
        return []
    found = {
        r[0]: Row(*r)
        for r in session.exec(select(*ROW_COLUMNS).where(col(Candidate.id).in_(ids))).all()
    }
    return [found[i] for i in ids if i in found]


def ids_with_status(
    session: Session, campaign_id: int, status: str, offset: int, limit: int, descending: bool
) -> list[int]:
    """Ids of the campaign's candidates of a status, by id: (campaign_id, status) index
    entries are in id order, so the page is read directly, without a sort."""
    order = col(Candidate.id).desc() if descending else col(Candidate.id).asc()
    return list(
        session.exec(
            select(Candidate.id)
            .where(Candidate.campaign_id == campaign_id, Candidate.status == status)
            .order_by(order)
            .offset(offset)
            .limit(limit)
        ).all()
    )


def full_order(session: Session, campaign_id: int, sort: str, descending: bool) -> list[int]:
    """Every scored candidate's id by fitness or meta-test fitness (ties by id, missing
    values last), for the pages no index can order cheaply."""
    column = Candidate.fitness if sort == "fitness" else Candidate.meta_test_fitness
    rows = session.exec(
        select(Candidate.id, column).where(
            Candidate.campaign_id == campaign_id, Candidate.status == Status.OK
        )
    ).all()
    sign = -1.0 if descending else 1.0
    return [i for i, _ in sorted(rows, key=lambda r: (r[1] is None, sign * (r[1] or 0.0), r[0]))]
