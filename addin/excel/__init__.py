"""The shipped Excel add-in: ``nearmiss.xlam``, its ribbon source and its installers.

- ``customUI.xml``: the ribbon (tab "nearmiss", one button that runs the chooser);
- ``build_addin.py``: ``python -m addin.excel.build_addin`` makes ``nearmiss.xlam`` from xlwings'
  own ``xlwings quickstart nearmiss --addin --ribbon`` output plus ``customUI.xml`` and the
  settings sheet; the VBA inside is xlwings' quickstart VBA, byte for byte;
- ``nearmiss.py``: the module the ribbon's ``RunMain`` imports (``import nearmiss; nearmiss.main()``);
- ``install.py``: ``python -m addin.excel.install`` copies the add-in to Excel's startup folder
  and writes the settings file; ``install-addin.ps1`` (Windows) and ``install-addin.sh`` (Mac)
  install Python's side first and then run it.

See docs/excel-addin.md.
"""
