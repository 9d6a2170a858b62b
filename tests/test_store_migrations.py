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


def _fill_every_kind_of_row(n: int = 5):
    """Whole-image and region rows of two methods, local features, a whitening fit and a graph
    row, written through the store (no model needed). Returns the whole-image rows."""
    import numpy as np

    from app.describe.keypoints import LocalFeatures
    from app.describe.registry import get_model
    from app.store.db import get_engine
    from app.store.embeddings import write_embeddings
    from app.store.graph import write_graph
    from app.store.local import write_local
    from app.store.whitening import save_whitening
    from tests.helpers import store_images

    spec, rng = get_model("efficientnet-lite0"), np.random.default_rng(3)
    rows = [{"sha256": f"{i:064x}", "path": f"/m/{i}.jpg", "width": 8, "height": 6, "label": None} for i in range(n)]
    with get_engine().begin() as conn:
        ids = store_images(conn, rows)
        image_ids = [ids[r["sha256"]] for r in rows]
        vectors = rng.normal(size=(n, 4, spec.dim)).astype(np.float32)
        write_embeddings(conn, spec, "global", [(i, 0, v[0]) for i, v in zip(image_ids, vectors)])
        write_embeddings(conn, spec, "rmac", [(i, r, v[r]) for i, v in zip(image_ids, vectors) for r in range(4)])
        features = LocalFeatures(rng.random((3, 2), dtype=np.float32), rng.integers(0, 16, (3, 64), np.uint8))
        write_local(conn, "sift", [(i, features) for i in image_ids])
        save_whitening(conn, 1, spec.name, "rmac", n, np.zeros(spec.dim), np.eye(spec.dim, dtype=np.float32))
        write_graph(conn, spec.name, "sift", [(image_ids[0], {image_ids[1]: 12.0}, {image_ids[1]: 0.9})], "gem")
    return {(i, m): v for i, v in zip(image_ids, vectors) for m in ("global", "rmac")}


def test_downgrades_under_data_delete_exactly_what_the_later_schema_added(database):
    import numpy as np

    from app.store.embeddings import as_array

    whole = _fill_every_kind_of_row()
    migrate.downgrade("0003")  # the match graph goes
    assert "match_graph" not in _tables(database) and {"local_features", "whitening"} <= _tables(database)
    migrate.downgrade("0002")  # regions, local features and whitening go; whole-image rows stay
    assert not {"local_features", "whitening"} & _tables(database)
    with psycopg.connect(database) as conn:
        from pgvector.psycopg import register_vector

        register_vector(conn)
        kept = {(i, m): v for i, m, v in conn.execute("SELECT image_id, method, embedding FROM emb_efficientnet_lite0")}
    assert kept.keys() == whole.keys()  # one row per image and method, the region rows deleted
    assert all(np.allclose(as_array(kept[key]), whole[key][0]) for key in whole)
    migrate.upgrade("head")
    with psycopg.connect(database) as conn:
        regions = conn.execute("SELECT count(*), count(*) FILTER (WHERE region = 0) "
                               "FROM emb_efficientnet_lite0").fetchone()
        emptied = [conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                   for t in ("local_features", "whitening", "match_graph")]
    assert regions == (10, 10) and emptied == [0, 0, 0]


def test_0007_reads_rows_written_before_as_compact_and_going_down_drops_only_compact_rows(database):
    """A row of 0006 (float32 keypoints, 128 SIFT values) is read after 0007 as the compact
    features extraction gives today; down to 0006, the rows 0006 can read stay."""
    import numpy as np
    from sqlalchemy import text

    from app.describe.keypoints import LocalFeatures, compact_sift
    from app.store.db import get_engine
    from app.store.local import load_local, write_local
    from tests.helpers import store_images

    rng = np.random.default_rng(7)
    points, sift = rng.random((5, 2), dtype=np.float32) * 1000, rng.integers(0, 160, (5, 128)).astype(np.uint8)
    migrate.downgrade("0006")
    rows = [{"sha256": f"{i:064x}", "path": f"/c/{i}.jpg", "width": 8, "height": 6, "label": None} for i in range(2)]
    with get_engine().begin() as conn:
        old, new = (store_images(conn, rows)[r["sha256"]] for r in rows)
        conn.execute(text("INSERT INTO local_features (image_id, kind, n, points, descriptors) "
                          "VALUES (:i, 'sift', 5, :p, :d)"), {"i": old, "p": points.tobytes(), "d": sift.tobytes()})
    migrate.upgrade("head")
    with get_engine().begin() as conn:
        write_local(conn, "sift", [(new, LocalFeatures(points, compact_sift(sift)))])
        stored = load_local(conn, "sift", [old, new])
        sizes = dict(conn.execute(text("SELECT image_id, octet_length(points) + octet_length(descriptors) "
                                       "FROM local_features")).all())
    assert np.array_equal(stored[old].descriptors, compact_sift(sift)) and np.array_equal(stored[old].points, points)
    assert np.array_equal(stored[new].descriptors, compact_sift(sift))
    assert np.abs(stored[new].points - points).max() <= 1 / 64  # 1/32 px steps
    assert sizes == {old: 5 * (8 + 128), new: 5 * (4 + 32)}
    migrate.downgrade("0006")
    with get_engine().begin() as conn:
        assert [r[0] for r in conn.execute(text("SELECT image_id FROM local_features"))] == [old]


def test_0005_moves_every_image_path_to_a_file_of_default_and_back(database):
    """Data written by the schema before collections: each image's path and label become a file
    row of ``default``; down again, paths and labels come back, other collections go."""
    from tests.helpers import store_images

    migrate.downgrade("0004")
    with psycopg.connect(database) as conn:
        for i, (path, label) in enumerate([("/p/a.jpg", "x"), ("/p/b.jpg", None), ("/p/sub/c d.jpg", "y")]):
            conn.execute("INSERT INTO images (sha256, path, width, height, label) VALUES (%s, %s, 4, 3, %s)",
                         (f"{i:064x}", path, label))
        conn.execute("INSERT INTO failures (path, reason) VALUES ('/p/bad.jpg', 'not an image')")
        before = dict(conn.execute("SELECT path, id FROM images").fetchall())
    migrate.upgrade("head")
    with psycopg.connect(database) as conn:
        files = conn.execute("SELECT c.name, f.path, f.image_id, f.label FROM files f "
                             "JOIN collections c ON c.id = f.collection_id ORDER BY f.path").fetchall()
        assert files == [("default", "/p/a.jpg", before["/p/a.jpg"], "x"), ("default", "/p/b.jpg", before["/p/b.jpg"], None),
                         ("default", "/p/sub/c d.jpg", before["/p/sub/c d.jpg"], "y")]
        assert conn.execute("SELECT c.name FROM failures x JOIN collections c ON c.id = x.collection_id").fetchall() \
            == [("default",)]
        columns = {r[0] for r in conn.execute("SELECT column_name FROM information_schema.columns "
                                              "WHERE table_name = 'images'")}
        assert "path" not in columns and "label" not in columns and "collection_id" in columns
    from app.store.db import get_engine

    with get_engine().begin() as conn:  # the same content in a second collection, and a copy in default
        conn.exec_driver_sql("INSERT INTO collections (name) VALUES ('other')")
        store_images(conn, [{"sha256": f"{0:064x}", "path": "/q/a.jpg", "width": 4, "height": 3}], collection=2)
        store_images(conn, [{"sha256": f"{0:064x}", "path": "/p/0 copy.jpg", "width": 4, "height": 3}])
    migrate.downgrade("0004")
    with psycopg.connect(database) as conn:
        rows = conn.execute("SELECT path, label FROM images ORDER BY path").fetchall()
        assert rows == [("/p/0 copy.jpg", "x"), ("/p/b.jpg", None), ("/p/sub/c d.jpg", "y")]  # first path, a label kept
        assert conn.execute("SELECT count(*) FROM failures").fetchone()[0] == 1
    assert "collections" not in _tables(database) and "files" not in _tables(database)
    migrate.upgrade("head")
