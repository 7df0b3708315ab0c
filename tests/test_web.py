"""The Gradio search page: query combining, and a real headless Chromium typing a query."""

from __future__ import annotations

import html
import socket
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from fastquant.data import medicine_parquet
from fastquant.demo import MEDICINE_TEMPLATE
from fastquant.web import (
    EMPTY_QUERY,
    FILTER_LABEL,
    build_app,
    combine_query,
    query_fields,
    search_page,
)

pytestmark = pytest.mark.filterwarnings("ignore:::gradio.queueing")  # its pandas 3 deprecations

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
MEDICINES = {"template": MEDICINE_TEMPLATE}
FIELDS = ["Medicine Name", "Composition", "Uses", "Side_effects"]


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    """A wordllama index of the first 300 bundled medicines."""
    pytest.importorskip("wordllama", reason="the test model: pip install wordllama")
    from fastquant.embed import index_file
    from fastquant.texts import TextIndex

    folder = tmp_path_factory.mktemp("web")
    pq.write_table(pq.read_table(medicine_parquet()).slice(0, 300), folder / "medicines.parquet")
    index_file(
        folder / "medicines.parquet",
        folder / "store",
        template=MEDICINE_TEMPLATE,
        model="wordllama",
        progress=False,
    )
    with TextIndex.open(folder / "store") as opened:
        yield opened


@pytest.fixture(scope="module")
def page_url(index):
    """The page of the store of ``index``, served by this process on a free localhost port."""
    pytest.importorskip("gradio", reason="the web page: pip install 'fastquant[web]'")
    from fastquant.web import serve

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = serve(index.path, port=port, model=index.encoder, title="Medicine search", block=False)
    yield app.local_url
    app.close()


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, headless, driven by Playwright (which cannot download browsers here)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's Chromium: apt-get install -y chromium")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS
        )
        yield launched
        launched.close()


def test_query_fields_of_a_template_and_of_a_column():
    assert query_fields(MEDICINES) == FIELDS
    assert query_fields({"column": "text"}) == ["text"]
    assert query_fields({"template": "{a} and {b}, then {a}"}) == ["a", "b"]


def test_combine_query_keeps_the_labels_of_filled_fields_only():
    uses = "Treatment of Bacterial infections"
    assert combine_query(MEDICINES, {"Uses": f"  {uses} "}) == f"Uses: {uses}"
    assert (
        combine_query(MEDICINES, {"Side_effects": "Nausea", "Medicine Name": "Dolo", "Uses": " "})
        == "Name: Dolo. Side effects: Nausea"
    )
    record = {"Medicine Name": "A", "Composition": "B", "Uses": "C", "Side_effects": "D"}
    assert combine_query(MEDICINES, record) == MEDICINE_TEMPLATE.format_map(record)
    assert combine_query({"column": "text"}, {"text": " fever "}) == "fever"
    assert combine_query({"template": "{a} - {b}"}, {"b": "B"}) == "B"
    assert combine_query({"template": "{a} - {b}"}, {"a": "-5", "b": "B"}) == "-5 - B"
    assert combine_query(MEDICINES, {"Uses": "", "Composition": " \n"}) == ""
    assert combine_query({"column": "text"}, {}) == ""


def test_an_empty_query_asks_for_one(index):
    answer = search_page(index, dict.fromkeys(FIELDS, "  "), 10)
    assert EMPTY_QUERY in answer and "<table" not in answer


def test_a_missing_gradio_says_what_to_install(index, monkeypatch):
    monkeypatch.setitem(sys.modules, "gradio", None)
    with pytest.raises(ImportError, match=r"pip install 'fastquant\[web\]'"):
        build_app(index)


def test_search_page_escapes_records_and_formats_scores(index):
    answer = search_page(index, {"Uses": "pain <b>relief</b>"}, 3)
    assert "Query: Uses: pain &lt;b&gt;relief&lt;/b&gt;" in answer
    (expected,) = index.search("Uses: pain <b>relief</b>", 3)
    assert f'<td class="number">{expected.hits[0].score:.3f}</td>' in answer
    assert "3 results in " in answer and " over 300 rows" in answer


@pytest.mark.parametrize(
    "scan", ["asymmetric", "asymmetric-exact", "hamming", "hamming+asymmetric"]
)
def test_search_page_uses_the_chosen_scan(index, scan):
    answer = search_page(index, {"Uses": "fever"}, 5, scan)
    (expected,) = index.search("Uses: fever", 5, scan=scan)
    for hit in expected.hits:
        assert f'<td class="number">{hit.score:.3f}</td>' in answer


def test_search_page_filters_by_an_sql_condition_and_shows_its_errors(index):
    where = "\"Composition\" ILIKE '%amoxycillin%'"
    answer = search_page(index, {"Uses": "fever"}, 5, where=f"  {where} ")
    (expected,) = index.search("Uses: fever", 5, where=where)
    assert expected.hits and all("moxycillin" in h.record["Composition"] for h in expected.hits)
    for hit in expected.hits:
        assert f"<td>{html.escape(hit.record['Medicine Name'].strip())}</td>" in answer
    assert f"Query: Uses: fever where {html.escape(where)}" in answer
    answer = search_page(index, {"Uses": "fever"}, 5, where="Price < 3")
    assert answer.startswith('<p class="status error">Filter: cannot filter the records by ')
    assert "Price" in answer and "<table>" not in answer


def test_the_page_in_chromium_shows_what_the_index_finds(index, page_url, browser):
    from playwright.sync_api import expect

    outside: list[str] = []
    page = browser.new_page()
    page.on("request", lambda r: None if r.url.startswith(page_url) else outside.append(r.url))
    page.goto(page_url)
    status = page.locator("#results .status")

    uses = "Treatment of Bacterial infections"
    page.get_by_label("Uses").fill(uses)
    page.get_by_role("button", name="Search").click()
    expect(status).to_contain_text("10 results in ")
    expect(status).to_contain_text(" ms embedding over 300 rows")
    assert _table_rows(page) == _expected_rows(index, f"Uses: {uses}", 10)

    page.locator("#top-k input[type=number]").fill("5")
    page.get_by_label("Medicine Name").fill("Azithral")
    page.get_by_label("Medicine Name").press("Enter")
    expect(status).to_contain_text("5 results in ")
    assert _table_rows(page) == _expected_rows(index, f"Name: Azithral. Uses: {uses}", 5)

    page.get_by_label(FILTER_LABEL).fill("\"Composition\" ILIKE '%azithromycin%'")
    page.get_by_label(FILTER_LABEL).press("Enter")
    expect(status).to_contain_text("5 results in ")
    expect(page.locator("#results .query")).to_contain_text("where")
    where = "\"Composition\" ILIKE '%azithromycin%'"
    assert _table_rows(page) == _expected_rows(index, f"Name: Azithral. Uses: {uses}", 5, where)
    page.get_by_label(FILTER_LABEL).fill("Composition >")
    page.get_by_role("button", name="Search").click()
    expect(status).to_contain_text("Filter: cannot filter the records by")
    page.get_by_label(FILTER_LABEL).fill("")

    for field in ("Medicine Name", "Uses"):
        page.get_by_label(field).fill("")
    page.get_by_role("button", name="Search").click()
    expect(status).to_have_text(EMPTY_QUERY)
    expect(page.locator("#results table")).to_have_count(0)
    page.close()
    assert outside == [], "the page must load nothing from the network"


def _table_rows(page) -> list[list[str]]:
    rows = page.locator("#results tbody tr")
    return [
        [" ".join(cell.split()) for cell in row.locator("td").all_inner_texts()]
        for row in rows.all()
    ]


def _expected_rows(index, query: str, k: int, where: str | None = None) -> list[list[str]]:
    (result,) = index.search(query, k, where=where)
    return [
        [str(hit.rank), f"{hit.score:.3f}", *(" ".join(str(hit.record[f]).split()) for f in FIELDS)]
        for hit in result.hits
    ]
