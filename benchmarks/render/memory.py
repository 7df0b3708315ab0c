"""Memory per million vectors: computed from the formats, not measured (no result file)."""

from __future__ import annotations

from render.common import Images, table

TITLE = "Memory per million vectors"
#: This section is computed: it reads no ``results/memory.json``.
COMPUTED = True
DIMS = (384, 1024)
VECTORS = 1_000_000


def sizes(dim: int) -> dict[str, int]:
    """Bytes of one million vectors of ``dim`` dimensions in each precision."""
    return {"float32": 4 * dim * VECTORS, "int8": dim * VECTORS, "binary": dim // 8 * VECTORS}


def markdown(result: None, images: Images) -> str:
    rows = []
    for dim in DIMS:
        size = sizes(dim)
        cells = [str(dim)] + [f"{size[p] / 1e6:,.0f} MB" for p in ("float32", "int8", "binary")]
        cells += [f"1/{size['float32'] // size['int8']}", f"1/{size['float32'] // size['binary']}"]
        cells.append(f"{(size['int8'] + size['binary']) / 1e6:,.0f} MB")
        rows.append(cells)
    lines = [
        "Computed: 4 bytes per dimension for float32, 1 for int8, 1 bit for binary (packed 8 per "
        "byte). MB = 10^6 bytes. A `CorpusStore` keeps both codes on disk and scans only the "
        "bits, so what a search needs in RAM is the binary column; the int8 rows of the "
        "candidates are read from the page cache or the disk.",
        "",
        *table(
            [
                "dims",
                "float32",
                "int8",
                "binary",
                "int8 vs float32",
                "binary vs float32",
                "store on disk (binary + int8)",
            ],
            rows,
        ),
    ]
    return "\n".join(lines)


def headline(result: None) -> list[tuple[str, str]]:
    size = sizes(1024)
    return [
        (
            "Memory, 1M x 1024-d",
            f"float32 {size['float32'] / 1e9:.1f} GB, int8 {size['int8'] / 1e9:.1f} GB, "
            f"binary {size['binary'] / 1e6:.0f} MB",
        )
    ]
