"""Alembic environment: migrations run on the engine handed over by archive.db.upgrade, or
on the URL in SCIENTIST_DB when alembic is run from the command line."""

from alembic import context
from sqlmodel import SQLModel

import archive.schema  # noqa: F401  (registers the tables on SQLModel.metadata)

target_metadata = SQLModel.metadata


def run() -> None:
    engine = context.config.attributes.get("engine")
    if engine is None:
        from archive.db import default_url, make_engine

        engine = make_engine(default_url())
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run()
