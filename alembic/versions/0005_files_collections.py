"""collections, and files apart from images

- ``collections``: named sets of photos; ``default`` (id 1) holds everything stored before;
- ``images`` (content) belong to a collection, one row per (collection, sha256); their path and
  label move to
- ``files``: one row per (collection, path): the image it holds, size, mtime, label, when an
  ingest last saw it. Every image has at least one file (the code deletes an image with its
  last file);
- ``failures`` and ``whitening`` belong to a collection.

Every existing ``images.path`` becomes a file of ``default``. Downgrade keeps ``default``: each
image gets back the first of its paths (and the first label among its files); the other
collections, their images and rows cannot be kept in the older schema and are deleted.

Revision ID: 0005
Revises: 0004
"""
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _add_collection_column(table: str) -> None:
    op.execute(f"ALTER TABLE {table} ADD COLUMN collection_id integer NOT NULL DEFAULT 1 "
               f"REFERENCES collections(id) ON DELETE CASCADE")
    op.execute(f"ALTER TABLE {table} ALTER COLUMN collection_id DROP DEFAULT")


def upgrade() -> None:
    op.execute("""CREATE TABLE collections (
        id serial PRIMARY KEY,
        name text NOT NULL UNIQUE CHECK (name <> ''),
        created_at timestamptz NOT NULL DEFAULT now())""")
    op.execute("INSERT INTO collections (id, name) VALUES (1, 'default')")
    op.execute("SELECT setval('collections_id_seq', 1)")
    _add_collection_column("images")
    op.execute("ALTER TABLE images DROP CONSTRAINT images_sha256_key")
    op.execute("ALTER TABLE images ADD CONSTRAINT images_collection_sha256_key UNIQUE (collection_id, sha256)")
    op.execute("""CREATE TABLE files (
        id bigserial PRIMARY KEY,
        collection_id integer NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
        path text COLLATE "C" NOT NULL,
        image_id bigint NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        size bigint,
        mtime_ns bigint,
        label text,
        seen_at timestamptz NOT NULL DEFAULT now(),
        UNIQUE (collection_id, path))""")
    op.execute("CREATE INDEX ix_files_image ON files (image_id)")
    op.execute("CREATE INDEX ix_files_label ON files (collection_id, label) WHERE label IS NOT NULL")
    op.execute("INSERT INTO files (collection_id, path, image_id, label, seen_at) "
               "SELECT collection_id, path, id, label, ingested_at FROM images ORDER BY id")
    op.execute("DROP INDEX IF EXISTS ix_images_path")
    op.execute("ALTER TABLE images DROP COLUMN path, DROP COLUMN label")
    _add_collection_column("failures")
    _add_collection_column("whitening")
    op.execute("ALTER TABLE whitening DROP CONSTRAINT whitening_pkey")
    op.execute("ALTER TABLE whitening ADD PRIMARY KEY (collection_id, model, method)")


def downgrade() -> None:
    op.execute("DELETE FROM collections WHERE id <> 1")  # cascades to their images, files, fits
    op.execute("DELETE FROM images i WHERE NOT EXISTS (SELECT 1 FROM files f WHERE f.image_id = i.id)")
    op.execute("ALTER TABLE images ADD COLUMN path text, ADD COLUMN label text")
    op.execute("""UPDATE images i SET
        path = (SELECT min(f.path) FROM files f WHERE f.image_id = i.id),
        label = (SELECT f.label FROM files f WHERE f.image_id = i.id AND f.label IS NOT NULL
                 ORDER BY f.path LIMIT 1)""")
    op.execute("ALTER TABLE images ALTER COLUMN path SET NOT NULL")
    op.execute("CREATE INDEX ix_images_path ON images (path)")
    op.execute("DROP TABLE files")
    op.execute("ALTER TABLE images DROP CONSTRAINT images_collection_sha256_key")
    op.execute("ALTER TABLE images DROP COLUMN collection_id")
    op.execute("ALTER TABLE images ADD CONSTRAINT images_sha256_key UNIQUE (sha256)")
    op.execute("ALTER TABLE failures DROP COLUMN collection_id")
    op.execute("ALTER TABLE whitening DROP CONSTRAINT whitening_pkey")
    op.execute("ALTER TABLE whitening DROP COLUMN collection_id")
    op.execute("ALTER TABLE whitening ADD PRIMARY KEY (model, method)")
    op.execute("DROP TABLE collections")
