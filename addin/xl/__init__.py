"""The Excel layer of nearmiss: UDFs, ribbon macros, the checked copy and the Trends sheet.

Only the open-source (BSD) part of xlwings is used: ``@xw.func``/``@xw.arg``/``@xw.ret``
UDFs, ``@xw.sub`` macros run by ``RunPython`` and ``xw.Book.caller()``.  Nothing here
imports ``xlwings.pro`` or ``xlwings.server`` or needs a licence key.

Layers, each tested on Linux without Excel:

- :mod:`.functions`: plain functions behind the UDFs (Excel values in, Excel values out);
- :mod:`.udfs`: the ``NEARMISS_*`` worksheet functions, thin wrappers over :mod:`.functions`;
- :mod:`.excel_io`: the adapter seam (read_sheet, write_sheet, add_chart, highlight, alert, ...)
  with two backends: xlwings (the live workbook in Excel) and openpyxl (a file, no Excel);
- :mod:`.checked_copy` and :mod:`.trends_sheet`: what the Checks and Trends sheets hold, written
  through the adapter, plus pure file-in/file-out functions (the server's upload page uses them);
- :mod:`.submit`: settings lookup and the upload to the area server;
- :mod:`.macros`: the ribbon's actions as plain functions over an adapter, and the ``@xw.sub``
  entry points that only build the xlwings adapter from ``xw.Book.caller()``.

The shipped add-in (``addin/excel/nearmiss.xlam``) and how a care manager installs it are
described in ``docs/excel-addin.md``.
"""
