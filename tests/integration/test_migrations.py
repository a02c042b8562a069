"""Each silo's migrations on both databases: from empty to head and back, and the models agree."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect

from control.db import schema as control_schema
from region.db import schema as region_schema
from shared.db.engine import make_engine
from shared.db.migrate import MigrationSet
from shared.errors import SchemaMismatch
from tests.conftest import DatabaseFactory

SILOS = {"control": control_schema.MIGRATIONS, "region": region_schema.MIGRATIONS}


@pytest.fixture
def engines(make_database: DatabaseFactory) -> Iterator[dict[str, Engine]]:
    made = {silo: make_engine(make_database(silo)) for silo in SILOS}
    yield made
    for engine in made.values():
        engine.dispose()


def schema_differences(engine: Engine, migrations: MigrationSet) -> list[object]:
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection,
            opts={
                "compare_type": True,
                "include_name": lambda name, type_, _parent: (
                    type_ != "table" or name in migrations.metadata.tables
                ),
            },
        )
        return list(compare_metadata(context, migrations.metadata))


@pytest.mark.parametrize("silo", SILOS)
def test_upgrade_from_empty_matches_the_models(engines: dict[str, Engine], silo: str) -> None:
    migrations, engine = SILOS[silo], engines[silo]
    assert migrations.current(engine) is None
    assert not migrations.is_current(engine)
    migrations.upgrade(engine)
    assert migrations.current(engine) == migrations.head()
    assert set(migrations.metadata.tables) <= set(inspect(engine).get_table_names())
    assert schema_differences(engine, migrations) == []
    migrations.upgrade(engine)  # a second run is a no-op
    assert migrations.is_current(engine)


@pytest.mark.parametrize("silo", SILOS)
def test_downgrade_to_base_and_up_again(engines: dict[str, Engine], silo: str) -> None:
    migrations, engine = SILOS[silo], engines[silo]
    migrations.upgrade(engine)
    migrations.downgrade(engine, "base")
    assert not set(migrations.metadata.tables) & set(inspect(engine).get_table_names())
    migrations.upgrade(engine)
    assert schema_differences(engine, migrations) == []


def test_a_silo_refuses_the_other_silos_database(engines: dict[str, Engine]) -> None:
    control_schema.MIGRATIONS.upgrade(engines["control"])
    with pytest.raises(SchemaMismatch, match="another silo's tables"):
        region_schema.MIGRATIONS.upgrade(engines["control"])
    assert "region_silo_info" not in inspect(engines["control"]).get_table_names()


def test_a_region_refuses_another_regions_database(engines: dict[str, Engine]) -> None:
    engine = engines["region"]
    region_schema.MIGRATIONS.upgrade(engine)
    region_schema.claim_database(engine, "eu")
    region_schema.claim_database(engine, "eu")
    with pytest.raises(SchemaMismatch, match="belongs to region 'eu', not 'us'"):
        region_schema.claim_database(engine, "us")
