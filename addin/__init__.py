"""The Python behind the site workbook: reading, validation, trends, SPC and conversion."""
