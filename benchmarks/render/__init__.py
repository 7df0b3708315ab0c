"""One renderer per result: ``render/<name>.py`` turns ``results/<name>.json`` into its section.

Each module has ``TITLE``, ``markdown(result, images) -> str`` (the section's body, under the
header that ``common.header`` writes from the result's common keys) and, when it has figures
worth a README line, ``headline(result) -> [(what, figure), ...]``.
"""
