"""Reports made from the consolidated logs: the commissioner return and the governance summary workbook.

- :mod:`.commissioner_return`: ``build_return`` (pure: frames in, counts out) and ``write_return``;
- :mod:`.governance`: ``write_governance``, the area lead's summary workbook with native SPC charts;
- :mod:`.suppression`: NHS Digital small-number suppression with secondary suppression;
- :mod:`.xlsx`: the safe workbook, formats, typed cell writing and temp-file-then-rename output.

The ``nearmiss consolidate`` and ``nearmiss return`` commands (``server.report_commands``)
read site workbooks and call these.
"""
