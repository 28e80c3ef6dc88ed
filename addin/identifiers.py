"""Personal identifiers in free text: NHS numbers, dates of birth, postcodes and titled names.

Every function takes a pandas Series of text (one cell per element; missing
values allowed) and works on the whole column with pandas' vectorised string
methods.  The finders return a Series of the first matched text per row
(missing where nothing matched); the ``has_*`` helpers return boolean masks.
Only candidate NHS numbers are checked for their modulus-11 check digit.

What counts (and what deliberately does not):

- NHS number: 10 digits written together, 3-3-4 with spaces or dashes, with a
  valid modulus-11 check digit.  Numbers of one repeated digit (0000000000,
  1111111111) are placeholders and do not count; nor does a longer run of
  digits (an 11-digit phone number such as 01632 960001).
- Date of birth: a date within a few characters of a cue (DOB, D.O.B., date of
  birth, birth date, born), in either order.  A date without a cue does not count.
- Postcode: a full UK postcode (outward and inward code), any case, with or
  without the space.  "B1 2nd floor" is not a postcode: a lower-case ordinal
  (1st, 2nd, 3rd, 4th...) never counts as an inward code.
- Name: a title (Mr, Mrs, Ms, Miss, Mx, Dr; "Mr." too) followed by a
  capitalised word of two or more letters or an initial and a surname
  ("Mr Smith", "Mrs J. Jones", "Miss Amy").  A title alone, a title and a single
  letter ("Mr X", the usual anonymisation) and the upper-case "MS" (multiple
  sclerosis) do not count.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

# --- NHS number -------------------------------------------------------------------------
# A candidate: 10 digits, optionally grouped 3-3-4 by spaces or dashes, not part of a longer number.
NHS_CANDIDATE = r"(?<!\d)(?<!\d[ -])(\d{3})[ -]?(\d{3})[ -]?(\d{4})(?!\d)(?![ -]\d)"
NHS_WEIGHTS = np.arange(10, 1, -1)  # 10, 9, ..., 2 over the first nine digits


def nhs_check_digit(first_nine: str) -> int | None:
    """The check digit for nine digits, or None when no valid NHS number starts with them (remainder 10)."""
    total = int(np.dot([int(c) for c in first_nine], NHS_WEIGHTS))
    check = 11 - total % 11
    if check == 11:
        return 0
    return None if check == 10 else check


def is_valid_nhs_number(number: str) -> bool:
    """True when ``number`` (spaces and dashes allowed) is 10 digits with a valid check digit."""
    digits = re.sub(r"[ -]", "", str(number))
    if not re.fullmatch(r"\d{10}", digits) or len(set(digits)) == 1:
        return False
    return nhs_check_digit(digits[:9]) == int(digits[9])


def valid_nhs_numbers(digits: pd.Series) -> pd.Series:
    """Vectorised check over a Series of 10-digit strings: a boolean Series, same index."""
    digits = digits.astype("str")
    if digits.empty:
        return pd.Series(False, index=digits.index, dtype=bool)
    matrix = np.stack([digits.str[i].astype(int).to_numpy() for i in range(10)], axis=1)
    check = 11 - (matrix[:, :9] @ NHS_WEIGHTS) % 11
    check = np.where(check == 11, 0, check)  # 10 stays 10: never equal to a digit, so invalid
    repeated = (matrix == matrix[:, :1]).all(axis=1)
    return pd.Series((check == matrix[:, 9]) & ~repeated, index=digits.index)


def find_nhs_numbers(text: pd.Series) -> pd.Series:
    """The first NHS number (as written) per row, or missing."""
    text = _as_text(text)
    out = pd.Series(pd.NA, index=text.index, dtype="object")
    text = _candidates(text, NHS_PREFILTER)
    found = text.str.extractall(NHS_CANDIDATE) if len(text) else None
    if found is None or found.empty:
        return out.astype("str")
    digits = found[0] + found[1] + found[2]
    valid = valid_nhs_numbers(digits)
    first = digits[valid].groupby(level=0).first()
    out.loc[first.index] = first.to_numpy()
    return out.astype("str")


# --- date of birth --------------------------------------------------------------------------
_MONTH = (r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
          r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)")
_DATE = (r"(?:\d{1,2}[/.-]\d{1,2}[/.-](?:\d{4}|\d{2})(?!\d)"
         r"|\d{4}-\d{1,2}-\d{1,2}"
         rf"|\d{{1,2}}(?:st|nd|rd|th)?[ -]{_MONTH}\.?,?[ -]\d{{2,4}}"
         rf"|{_MONTH}\.? \d{{1,2}}(?:st|nd|rd|th)?,? \d{{4}})")
_DOB_CUE = r"(?:\bd\.?\s?o\.?\s?b\b\.?|\bdate of birth\b|\bbirth ?date\b|\bborn\b(?: on)?)"
DOB_PATTERN = (rf"(?i)(?:{_DOB_CUE}[\s:=(\-–]{{0,4}}(?:(?:is|was|of)\s+)?({_DATE})"
               rf"|({_DATE})\s{{0,2}}[(\[]?\s{{0,2}}{_DOB_CUE})")


def find_dates_of_birth(text: pd.Series) -> pd.Series:
    """The first date written next to a date-of-birth cue per row, or missing."""
    text = _as_text(text)
    some = _candidates(_candidates(text, DOB_PREFILTER), DOB_CUE_PREFILTER)
    found = some.str.extract(DOB_PATTERN)
    return found[0].fillna(found[1]).astype("str").reindex(text.index)


# --- postcode -------------------------------------------------------------------------------
# The full UK postcode grammar (outward: area + district; inward: sector digit + unit letters).
POSTCODE_PATTERN = (
    r"(?i)\b(GIR ?0AA|[A-PR-UWYZ](?:[0-9]{1,2}|[A-HK-Y][0-9]{1,2}|[0-9][A-HJKPS-UW]|[A-HK-Y][0-9][ABEHMNPRV-Y])"
    r" ?(?!(?-i:[0-9](?:st|nd|rd|th)\b))[0-9][ABD-HJLNP-UW-Z]{2})\b"
)


def find_postcodes(text: pd.Series) -> pd.Series:
    """The first UK postcode per row, or missing."""
    text = _as_text(text)
    return _candidates(text, POSTCODE_PREFILTER).str.extract(POSTCODE_PATTERN)[0].astype("str").reindex(text.index)


# --- a title followed by a name ------------------------------------------------------------
# Titles in their usual spellings; "MS" in capitals is left out (multiple sclerosis), and
# lower-case "miss" too (the verb).  The name: a capitalised word of 2+ letters, or an initial
# and a capitalised surname.
NAME_PATTERN = (
    r"\b(?:Mrs|Mr|Ms|Miss|Mx|Dr|MRS|MR|MISS|DR|mrs|mr)\b\.?[ \t]+"
    r"([A-Z]\.?[ \t]+[A-Z][A-Za-z'’-]+|[A-Z][A-Za-z'’-]+)"
)
# Words after a title that are not names (a title used as a noun, or a capitalised common word).
NOT_NAMES = frozenset({"And", "Or", "The", "To", "Of", "In", "On", "At", "For", "With", "Was", "Is"})


def find_titled_names(text: pd.Series) -> pd.Series:
    """The first name written after a title (e.g. 'Jones' in 'Mrs Jones') per row, or missing."""
    text = _as_text(text)
    out = pd.Series(pd.NA, index=text.index, dtype="object")
    text = _candidates(text, NAME_PREFILTER)
    found = text.str.extractall(NAME_PATTERN) if len(text) else None
    if found is None or found.empty:
        return out.astype("str")
    names = found[0].str.strip()
    names = names[~names.isin(NOT_NAMES)]
    first = names.groupby(level=0).first()
    out.loc[first.index] = first.to_numpy()
    return out.astype("str")


# --- cheap pre-filters --------------------------------------------------------------------
# Each finder's pattern runs in Python's ``re``, row by row.  Most free text holds no identifier,
# so first a weaker pattern that every match of the finder must also match (a necessary
# condition) picks the candidate rows in one vectorised RE2 pass (pyarrow, GIL released); the
# exact pattern then runs on those rows only.  The result is the same as scanning every row.
NHS_PREFILTER = r"\p{Nd}{3}[ -]?\p{Nd}{3}[ -]?\p{Nd}{4}"  # \d in a str pattern is any Unicode digit
DOB_PREFILTER = r"\p{Nd}"  # every date form the finder knows has a digit
# ... and every cue holds d-o-b (at most a dot and a space between), "b?rth" or "born".  Letters only
# whose case Python's re and RE2 fold alike (no i: Python's (?i) also takes the Turkish dotted I).
DOB_CUE_PREFILTER = r"(?is)d.{0,2}o.{0,2}b|b.rth|born"
POSTCODE_PREFILTER = r"(?i)[0-9][a-z]{2}"  # the inward code (case-folded as the finder's (?i) does)
NAME_PREFILTER = r"(?:Mrs|Mr|Ms|Miss|Mx|Dr|MRS|MR|MISS|DR|mrs|mr)\.?[ \t]+[A-Z]"
# NHS numbers, dates and postcodes all hold a digit: a row with no digit and no title holds nothing.
ANY_PREFILTER = r"\p{Nd}|" + NAME_PREFILTER


def _candidates(text: pd.Series, prefilter: str) -> pd.Series:
    """The rows of ``text`` (pandas str) that match ``prefilter`` (RE2 syntax), index kept."""
    array = getattr(text.array, "_pa_array", None)
    if array is None or not len(text):
        return text
    import pyarrow.compute as pc

    hit = pc.match_substring_regex(array, prefilter).to_numpy(zero_copy_only=False)
    return text[hit.astype(bool) & ~pd.isna(hit)] if hit.dtype == object else text[hit]


# --- all of them ----------------------------------------------------------------------------
FINDERS = {
    "nhs_number": find_nhs_numbers,
    "date_of_birth": find_dates_of_birth,
    "postcode": find_postcodes,
    "name": find_titled_names,
}


def scan(text: pd.Series) -> pd.DataFrame:
    """One column per kind of identifier (see FINDERS) holding the first match per row, or missing."""
    text = _as_text(text)
    found = scan_candidates(text)
    if not len(found) and len(text):
        return _nothing_found(text.index)
    if len(found) == len(text):
        return found
    return found.reindex(text.index).astype("str") if len(found.columns) else found.reindex(text.index)


def scan_candidates(text: pd.Series) -> pd.DataFrame:
    """:func:`scan` of only the rows that may hold an identifier (index: those rows' labels).

    Rows left out hold no identifier of any kind; the rows kept are as :func:`scan` gives them.
    A validation that needs only the rows where something was found skips making every
    column as long as the text.
    """
    text = _as_text(text)
    some = _candidates(text, ANY_PREFILTER)  # one pass over every row; the finders see the few left
    return pd.DataFrame({kind: finder(some) for kind, finder in FINDERS.items()}, index=some.index)


def _nothing_found(index: pd.Index) -> pd.DataFrame:
    """What :func:`scan` gives for rows where no finder matches: every column missing, as str."""
    empty = pd.Series(np.nan, index=index, dtype=object).astype("str")
    return pd.DataFrame({kind: empty for kind in FINDERS}, index=index)


def has_nhs_number(text: pd.Series) -> pd.Series:
    return find_nhs_numbers(text).notna()


def has_date_of_birth(text: pd.Series) -> pd.Series:
    return find_dates_of_birth(text).notna()


def has_postcode(text: pd.Series) -> pd.Series:
    return find_postcodes(text).notna()


def has_titled_name(text: pd.Series) -> pd.Series:
    return find_titled_names(text).notna()


def _as_text(text: pd.Series) -> pd.Series:
    """Text as pandas strings (missing stays missing), whatever the column held."""
    if not isinstance(text, pd.Series):
        text = pd.Series(text)
    if text.dtype == "str":
        return text
    return text.where(text.notna(), None).astype("str")
