"""The module the add-in's ribbon button imports.

The VBA of ``nearmiss.xlam`` is xlwings' quickstart VBA, unchanged: its one ribbon callback,
``RibbonMyAddin.RunMain``, runs ``import <add-in name>; <add-in name>.main()``, and the add-in
is called ``nearmiss.xlam``.  The installer puts this folder on the add-in's ``PYTHONPATH``
so that ``import nearmiss`` finds this file, which hands over to :func:`addin.xl.macros.main`
(the chooser: Check log, Refresh trends, Import existing log, Submit to area).
"""

from addin.xl.macros import check_log, import_log, main, refresh_trends, submit_to_area  # noqa: F401
