import datetime as dt

import pytest

from tests.support.libreoffice import LibreOffice

# Fixed "today" for synthetic data so expected figures never drift with the calendar.
DATA_END = dt.date(2026, 10, 31)


@pytest.fixture(scope="session")
def libreoffice(tmp_path_factory) -> LibreOffice:
    """One headless LibreOffice profile per pytest worker."""
    return LibreOffice(tmp_path_factory.mktemp("lo-profile"))
