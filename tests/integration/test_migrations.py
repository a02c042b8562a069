"""Each silo's migrations on both databases: from empty to head and back, and the models agree."""

from __future__ import annotations

import subprocess
import sys
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
    assert migrations.current(engine) == migrations.head() == migrations.head_revision
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


@pytest.mark.parametrize("silo", SILOS)
def test_the_head_revision_named_in_the_code_is_the_scripts_head(silo: str) -> None:
    # A database at head_revision is left alone without asking Alembic, so the two must agree.
    assert SILOS[silo].head_revision == SILOS[silo].head()


@pytest.mark.parametrize("silo", SILOS)
def test_a_database_one_revision_behind_is_migrated_to_head(engines: dict[str, Engine], silo: str) -> None:
    migrations, engine = SILOS[silo], engines[silo]
    migrations.upgrade(engine)
    migrations.downgrade(engine, "-1")
    assert migrations.current(engine) not in (None, migrations.head_revision)
    assert not migrations.is_current(engine)
    migrations.upgrade(engine)
    assert migrations.current(engine) == migrations.head_revision
    assert schema_differences(engine, migrations) == []


@pytest.mark.parametrize("silo", SILOS)
def test_a_current_database_is_checked_without_loading_alembic(engines: dict[str, Engine], silo: str) -> None:
    SILOS[silo].upgrade(engines[silo])
    url = engines[silo].url.render_as_string(hide_password=False)
    module = {"control": "control.db.schema", "region": "region.db.schema"}[silo]
    script = (
        "import sys\n"
        "from shared.db.engine import make_engine\n"
        f"from {module} import MIGRATIONS\n"
        f"engine = make_engine({url!r})\n"
        "MIGRATIONS.upgrade(engine)\n"
        "assert MIGRATIONS.is_current(engine)\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] in ('alembic', 'mako')))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
