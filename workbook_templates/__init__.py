"""The nearmiss data contract and the site workbook template built from it."""

from .contract import ACTIONS, CONTRACT, INCIDENTS, TABLE_SHEETS
from .codelists import CODE_LISTS

__all__ = ["ACTIONS", "CODE_LISTS", "CONTRACT", "INCIDENTS", "TABLE_SHEETS"]
