import xlsxwriter


def test_libreoffice_recalculates_xlsx_formulas(libreoffice, tmp_path):
    # Without the recalc profile LibreOffice keeps xlsxwriter's cached 0 (testing.md).
    path = tmp_path / "sum.xlsx"
    wb = xlsxwriter.Workbook(path)
    ws = wb.add_worksheet()
    ws.write_number("A1", 3)
    ws.write_number("A2", 4)
    ws.write_formula("A3", "=SUM(A1:A2)")
    wb.close()
    assert libreoffice.recalculate(path, tmp_path / "out")["Sheet1"]["A3"].value == 7
