"""The database: connection and retry policy, migrations, DDL, and every SQL statement.

Table names come from the model registry and method names from the method grammar
(``app.describe``); every value travels as a bind parameter, vectors as numpy arrays adapted
by pgvector-python (registered once per connection in ``app.store.db``).
"""
