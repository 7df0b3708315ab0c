"""Record predicates: an SQL condition over a text store's record columns, evaluated by DuckDB
(``pip install 'fastquant[text]'``) into the ids of the records it holds for.

The predicate is parsed as one expression (DuckDB's relational ``filter``: no second statement,
nothing before or after it) over the records as an in-memory Arrow table, on a connection whose
external access is switched off and whose configuration is locked before the predicate is read:
it can read no file, write none and load no extension. It is the user's own query over their own
records, so this guards against a predicate pasted from elsewhere, not against its author.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

#: Name of the id column added to the records for the query (lengthened if a record column has it).
ID_COLUMN = "_fastquant_id"


def matching_ids(records: pa.Table, predicate: str) -> np.ndarray:
    """``(m,) int64`` ascending row numbers of ``records`` (record ids) for which the SQL
    ``predicate`` holds, e.g. ``"Composition" ILIKE '%amoxycillin%' AND price < 10``.

    Column names with spaces or capitals are double-quoted, text literals single-quoted; a NULL
    outcome counts as false. Raises ``ValueError`` in one line naming the problem for SQL that
    does not parse, an unknown column, or a predicate that is not a condition; ``ImportError``
    without DuckDB.
    """
    if not isinstance(predicate, str):
        raise TypeError(
            f"where must be a string (an SQL condition), got {type(predicate).__name__}"
        )
    if not predicate.strip():
        raise ValueError("where is empty: give an SQL condition over the record columns")
    duckdb = _duckdb()
    id_column = ID_COLUMN
    while id_column in records.column_names:
        id_column += "_"
    table = records.append_column(id_column, pa.array(np.arange(records.num_rows), pa.int64()))
    connection = duckdb.connect(":memory:")
    try:
        relation = connection.from_arrow(table)
        connection.execute("SET enable_external_access = false")
        connection.execute("SET lock_configuration = true")
        try:
            chosen = relation.filter(predicate).project(f'"{id_column}"').fetchnumpy()
        except duckdb.Error as error:
            message = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
            raise ValueError(f"cannot filter the records by {predicate!r}: {message}") from None
    finally:
        connection.close()
    return np.sort(np.asarray(chosen[id_column], dtype=np.int64))


def _duckdb():
    try:
        import duckdb
    except ImportError as error:
        raise ImportError(
            "filtering by record columns needs duckdb: pip install 'fastquant[text]'"
        ) from error
    return duckdb
