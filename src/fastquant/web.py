"""A search page over a store built by ``fastquant index`` (Gradio: ``pip install 'fastquant[web]'``).

A store indexed with a template gets one text box per template field, a single-column store one
box. The filled boxes become one query text (:func:`combine_query`); a filter box takes an SQL
condition over the record columns (``TextIndex.search(..., where=...)``), whose errors are shown
on the page. The page lists the top ``k`` records with their scores and the time spent embedding
the query and searching.
"""

from __future__ import annotations

import html
import os
import string
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from ._engine import DEFAULT_SCAN, SCANS
from .encoders import Encoder, load_encoder
from .sources import template_fields
from .texts import TextIndex, TextResults

if TYPE_CHECKING:
    import gradio

EMPTY_QUERY = "Nothing to search: type a query first."
FILTER_LABEL = "Filter: an SQL condition over the record columns (optional)"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
_SEPARATORS = " \t\n.,;:|-"
_TABLE_CSS = """
p { margin: 0.5em 0; }
.query { font-size: var(--text-sm); }
table { width: 100%; border-collapse: collapse; border: none; font-size: var(--text-md); }
tr, th, td { border: none; }
th, td { text-align: left; vertical-align: top; padding: 6px 8px; }
th { border-bottom: 2px solid var(--border-color-primary); }
td { border-bottom: 1px solid var(--border-color-primary); }
.number { width: 1%; text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
.error { color: var(--error-text-color); }
"""


def query_fields(text_recipe: Mapping[str, str]) -> list[str]:
    """The columns a query fills: the template's fields in order, or the one text column.

    ``text_recipe`` is a store's ``description.text``: ``{"column": name}`` or ``{"template": text}``.
    """
    if "column" in text_recipe:
        return [text_recipe["column"]]
    return list(dict.fromkeys(template_fields(text_recipe["template"])))


def combine_query(text_recipe: Mapping[str, str], values: Mapping[str, str]) -> str:
    """One query text from the filled fields (``values``: field -> text); ``""`` if none is.

    With a template, each filled field brings the template's text before it (its label), in
    template order; blank fields are left out: ``{"Uses": "Migraine"}`` with the medicine
    template gives ``"Uses: Migraine"``. On the medicine demo this retrieves as well as the bare
    values, and better when a term can be both a use and a side effect ("Headache"), which only
    the label tells apart; filling the whole template with blanks retrieves worst.
    """
    filled = {name: value.strip() for name, value in values.items() if value and value.strip()}
    if "column" in text_recipe:
        return filled.get(text_recipe["column"], "")
    text = ""
    for label, name, _, _ in string.Formatter().parse(text_recipe["template"]):
        if name in filled:  # the first field kept drops its separator: ". Uses: " -> "Uses: "
            text += (label if text else label.lstrip(_SEPARATORS)) + filled[name]
    return text


def search_page(
    index: TextIndex,
    values: Mapping[str, str],
    k: int,
    scan: str = DEFAULT_SCAN,
    where: str = "",
) -> str:
    """The page's answer (HTML) to the query fields ``values``: status, query and results table.

    ``where`` (blank: none) keeps only the records it holds for; a filter that DuckDB cannot
    evaluate (bad SQL, an unknown column, DuckDB missing) is the status line, in red.
    """
    query = combine_query(index.description.text, values)
    if not query:
        return f'<p class="status">{EMPTY_QUERY}</p>'
    try:
        (result,) = index.search(query, k, scan=scan, where=where.strip() or None)
    except (ValueError, ImportError) as error:
        return f'<p class="status error">Filter: {html.escape(str(error))}</p>'
    shown = f" where {where.strip()}" if where.strip() else ""
    return "\n".join(
        (
            f'<p class="status">{_status(result, len(index))}</p>',
            f'<p class="query">Query: {html.escape(query + shown)}</p>',
            _table(result, index.fields),
        )
    )


def build_app(index: TextIndex, *, title: str = "fastquant search") -> gradio.Blocks:
    """The search page of ``index``, ready to ``.launch()`` (see :func:`serve`)."""
    gr = _gradio()
    fields = query_fields(index.description.text)

    def search(k: float, scan: str, where: str, *values: str) -> str:
        return search_page(index, dict(zip(fields, values)), int(k), scan, where)

    with gr.Blocks(title=title, analytics_enabled=False) as app:
        gr.Markdown(
            f"# {html.escape(title)}\n{len(index):,} records in `{index.path.name}`, "
            f"embedded with `{index.description.model}`"
        )
        with gr.Row():
            boxes = [gr.Textbox(label=_label(name)) for name in fields]
        columns = [_sql_name(name) for name in index.fields]
        where = gr.Textbox(
            label=FILTER_LABEL,
            placeholder=f"e.g. {columns[-1]} ILIKE '%word%'  (columns: {', '.join(columns)})",
            elem_id="filter",
        )
        with gr.Row(equal_height=True):
            k = gr.Slider(1, 100, value=10, step=1, label="Results", scale=3, elem_id="top-k")
            scan = gr.Radio(
                list(SCANS), value=DEFAULT_SCAN, label="Candidate scan", scale=2, elem_id="scan"
            )
            button = gr.Button("Search", variant="primary", scale=1)
        results = gr.HTML(elem_id="results", css_template=_TABLE_CSS)
        gr.on(
            [button.click, where.submit, *(box.submit for box in boxes)],
            search,
            inputs=[k, scan, where, *boxes],
            outputs=results,
            concurrency_id="search",  # the button and every Enter share one queue: one at a time
        )
    return app


def serve(
    path: str | os.PathLike[str],
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    model: str | Encoder | None = None,
    title: str = "fastquant search",
    block: bool = True,
) -> gradio.Blocks:
    """Serve the search page of the store at ``path`` on ``http://host:port``.

    ``model`` (a :func:`~fastquant.encoders.load_encoder` spec or a loaded encoder) replaces the
    model stored with the index, e.g. a model folder that moved.
    With ``block`` (default), says where and serves until interrupted (Ctrl+C); otherwise
    returns the running app at once (stop it with ``.close()``).
    """
    _gradio()  # missing? say so before loading the model
    index = TextIndex.open(path, encoder=load_encoder(model) if isinstance(model, str) else model)
    index.warm_up()  # load the model and compile the kernels before the first visitor
    app = build_app(index, title=title)
    # Gradio 6's default theme serves its own fonts: the page loads nothing from the internet.
    _, url, _ = app.launch(
        server_name=host, server_port=port, prevent_thread_lock=True, quiet=True, ssr_mode=False
    )
    if block:
        print(f"search page of {len(index):,} records in {index.path}: {url} (Ctrl+C stops)")
        app.block_thread()
        index.close()
    return app


def _status(result: TextResults, rows: int) -> str:
    return (
        f"{len(result.hits)} results in {result.seconds_search * 1e3:.1f} ms search + "
        f"{result.seconds_embedding * 1e3:.1f} ms embedding over {rows:,} rows"
    )


def _table(result: TextResults, columns: Sequence[str]) -> str:
    head = "".join(f"<th>{html.escape(_label(name))}</th>" for name in columns)
    rows = [
        f'<tr><td class="number">{hit.rank}</td><td class="number">{hit.score:.3f}</td>'
        + "".join(f"<td>{_cell(hit.record.get(name))}</td>" for name in columns)
        + "</tr>"
        for hit in result.hits
    ]
    return (
        f'<table><thead><tr><th class="number">rank</th><th class="number">score</th>{head}'
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _sql_name(name: str) -> str:
    """``name`` as an SQL identifier (double-quoted: spaces and capitals kept)."""
    return '"' + name.replace('"', '""') + '"'


def _label(name: str) -> str:
    return name.replace("_", " ").strip()


def _cell(value: object) -> str:
    return "" if value is None else html.escape(str(value).strip())


def _gradio():
    try:
        import gradio
    except ImportError as error:
        raise ImportError("the web page needs gradio: pip install 'fastquant[web]'") from error
    return gradio
