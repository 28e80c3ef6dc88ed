"""Personal identifiers in free text: what must be caught and what must not."""

from __future__ import annotations

import pandas as pd
import pytest

from addin.identifiers import (
    find_dates_of_birth, find_nhs_numbers, find_postcodes, find_titled_names, has_nhs_number, is_valid_nhs_number,
    nhs_check_digit, scan, valid_nhs_numbers,
)


def first(finder, text: str):
    value = finder(pd.Series([text])).iloc[0]
    return None if pd.isna(value) else value


# --- NHS numbers ---------------------------------------------------------------------------------

def test_check_digit_worked_example():
    # 943 476 591: 9*10+4*9+3*8+4*7+7*6+6*5+5*4+9*3+1*2 = 299; 299 mod 11 = 2; 11 - 2 = 9.
    assert nhs_check_digit("943476591") == 9
    assert nhs_check_digit("000000000") == 0  # 11 -> 0
    assert all(nhs_check_digit(n) in (None, *range(10)) for n in ("123456789", "401023213", "999999999"))


def test_a_nine_digit_start_whose_check_would_be_ten_is_never_valid():
    start = next(f"{n:09d}" for n in range(100_000_000, 100_001_000) if nhs_check_digit(f"{n:09d}") is None)
    assert not any(is_valid_nhs_number(start + str(d)) for d in range(10))
    assert not valid_nhs_numbers(pd.Series([start + str(d) for d in range(10)])).any()


def test_vectorised_check_agrees_with_the_scalar_one():
    numbers = pd.Series([f"{n:010d}" for n in range(943476_5900, 943476_6000)])
    assert valid_nhs_numbers(numbers).tolist() == [is_valid_nhs_number(n) for n in numbers]
    assert valid_nhs_numbers(numbers).sum() > 0


@pytest.mark.parametrize("text", [
    "NHS no 943 476 5919 noted.", "943-476-5919", "9434765919", "(NHS: 943 4765919)", "nhs943 476 5919.",
])
def test_nhs_numbers_found(text):
    assert first(find_nhs_numbers, text) == "9434765919"


@pytest.mark.parametrize("text", [
    "943 476 5918",  # wrong check digit
    "Call 01632 960001 if worried",  # a phone number: not 3-3-4, and 11 digits
    "01632960001",  # 11 digits in a row
    "0163 296 0001",  # 4-3-4
    "1111111111", "0000000000",  # placeholders
    "12 943 476 5919 0",  # part of a longer run of digits
    "Ref OAK-2026-0042", "Room 12, 3 staff, 45 minutes", "",
])
def test_nhs_numbers_not_found(text):
    assert first(find_nhs_numbers, text) is None


# --- dates of birth ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text, date", [
    ("DOB: 03/04/1940", "03/04/1940"),
    ("D.O.B. 3.4.40", "3.4.40"),
    ("date of birth 3 April 1940", "3 April 1940"),
    ("born on 3rd Apr 1940", "3rd Apr 1940"),
    ("born 1940-04-03", "1940-04-03"),
    ("03/04/1940 (DOB)", "03/04/1940"),
    ("dob 03-04-1940", "03-04-1940"),
])
def test_dates_of_birth_found(text, date):
    assert first(find_dates_of_birth, text) == date


@pytest.mark.parametrize("text", [
    "Fell on 03/04/2026 in the lounge",  # an ordinary date
    "Born in 1940",  # a year alone
    "Stubborn 03/04/2026 stain on the floor",
    "Reviewed 3 April 2026; DOB not recorded",
])
def test_dates_of_birth_not_found(text):
    assert first(find_dates_of_birth, text) is None


# --- postcodes -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, postcode", [
    ("Lives at SW1A 1AA", "SW1A 1AA"), ("m1 1ae", "m1 1ae"), ("B33 8TH.", "B33 8TH"), ("CR2 6XH", "CR2 6XH"),
    ("DN55 1PT", "DN55 1PT"), ("W1A0AX", "W1A0AX"), ("EC1A 1BB", "EC1A 1BB"),
])
def test_postcodes_found(text, postcode):
    assert first(find_postcodes, text) == postcode


@pytest.mark.parametrize("text", [
    "Room B1 2nd floor", "Given 500mg at 10am", "OAK-P022", "Q1 1AA",  # Q never starts a postcode
    "SW1A", "A1 review", "CO2 alarm",
])
def test_postcodes_not_found(text):
    assert first(find_postcodes, text) is None


# --- titles and names --------------------------------------------------------------------------------

@pytest.mark.parametrize("text, name", [
    ("Mrs Jones was upset.", "Jones"), ("Seen by Mrs J. Jones", "J. Jones"), ("Miss Amy", "Amy"),
    ("Mr. Smith fell", "Smith"), ("Dr Patel visited", "Patel"), ("Mx Taylor", "Taylor"), ("Ms Smith", "Smith"),
    ("MR O'NEILL", "O'NEILL"), ("told mr Brown", "Brown"),
])
def test_titled_names_found(text, name):
    assert first(find_titled_names, text) == name


@pytest.mark.parametrize("text", [
    "Mr", "Mr X was upset", "Mrs A", "Has MS (multiple sclerosis)", "Mr and Mrs", "Mr And Mrs",
    "staff did not miss Breakfast", "Mrs. ", "Drink offered",
])
def test_titled_names_not_found(text):
    assert first(find_titled_names, text) is None


# --- the vectorised interface -------------------------------------------------------------------------

def test_scan_keeps_the_index_and_missing_values():
    text = pd.Series(["Mrs Jones, DOB 03/04/1940, SW1A 1AA, NHS 943 476 5919", None, "", "All fine"],
                     index=[10, 20, 30, 40])
    found = scan(text)
    assert list(found.index) == [10, 20, 30, 40]
    assert found.loc[10].tolist() == ["9434765919", "03/04/1940", "SW1A 1AA", "Jones"]
    assert found.loc[[20, 30, 40]].isna().all().all()
    assert has_nhs_number(text).tolist() == [True, False, False, False]


def test_several_candidates_in_one_cell_the_valid_one_wins():
    text = pd.Series(["old 943 476 5918 then 943 476 5919", "Mr X and then Mrs Jones"])
    found = find_nhs_numbers(text)
    assert found.iloc[0] == "9434765919" and pd.isna(found.iloc[1])
    assert find_titled_names(text).iloc[1] == "Jones"


def test_object_and_numeric_columns_are_accepted():
    text = pd.Series(["Mrs Jones", 12.5, None], dtype=object)
    assert find_titled_names(text).notna().tolist() == [True, False, False]
    assert scan(pd.Series([], dtype=object)).empty
