import psycopg
from alembic.script import ScriptDirectory

from app.describe.registry import MODELS
from app.store import migrate
from app.store.ddl import index_name


def _tables(url):
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
        return {r[0] for r in rows}


def _vector_types(url):
    with psycopg.connect(url) as conn:
        rows = conn.execute("""
            SELECT c.relname, format_type(a.atttypid, a.atttypmod)
            FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
            WHERE a.attname = 'embedding' AND c.relkind = 'r'""").fetchall()
        return dict(rows)


def test_single_head():
    assert len(migrate.heads()) == 1
    assert len(list(ScriptDirectory.from_config(migrate.alembic_config()).walk_revisions())) >= 2


def test_upgrade_creates_a_table_per_model_sized_to_its_dimension(database):
    types = _vector_types(database)
    for spec in MODELS.values():
        assert types[spec.table] == f"vector({spec.dim})", spec.name
    assert {"images", "failures", "alembic_version"} <= _tables(database)


MIGRATED_METHODS = {"global", "gem", "gem-ms", "rmac", "gem+w", "gem-ms+w", "rmac+w"}  # indexes at head


def test_every_table_has_exactly_one_hnsw_cosine_index_per_migrated_method(database):
    with psycopg.connect(database) as conn:
        rows = conn.execute("SELECT tablename, indexname, indexdef FROM pg_indexes "
                            "WHERE indexdef LIKE '%USING hnsw%'").fetchall()
    for spec in MODELS.values():
        defs = {name: d for table, name, d in rows if table == spec.table}
        methods = {}
        for name, d in defs.items():
            method = d.rsplit("WHERE (method = '", 1)[1].split("'", 1)[0]
            assert name == index_name(spec.table, method), d
            methods[method] = d
        assert set(methods) == MIGRATED_METHODS and len(defs) == len(MIGRATED_METHODS), (spec.name, sorted(defs))
        for d in methods.values():
            if spec.dim > 2000:
                assert f"halfvec({spec.dim})" in d and "halfvec_cosine_ops" in d, d
            else:
                assert "(embedding vector_cosine_ops)" in d, d


def test_downgrade_to_base_leaves_an_empty_schema_and_upgrade_again(database):
    migrate.downgrade("base")
    assert _tables(database) == {"alembic_version"}
    with psycopg.connect(database) as conn:
        assert conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'vector'").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM alembic_version").fetchone()[0] == 0
    migrate.upgrade("head")
    assert migrate.current() == migrate.heads()[0]


def test_stepwise_downgrade_removes_only_the_later_models(database):
    migrate.downgrade("0001")
    tables = _tables(database)
    assert "emb_resnet50" in tables and "emb_efficientnet_lite0" not in tables
    migrate.upgrade("head")
    assert "emb_efficientnet_lite0" in _tables(database)
