"""Personal identifiers in free text: NHS numbers, dates of birth, postcodes and titled names.

Every function takes a pandas Series of text (one cell per element; missing
values allowed).  The finders return a Series of the first matched text per row
(missing where nothing matched); the ``has_*`` helpers return boolean masks.
Each kind has a cheap pre-filter run over the whole column in Arrow (RE2); only
the few rows it keeps go through the exact pattern, one ``first_*`` call per text.
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
import pyarrow as pa
import pyarrow.compute as pc

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
    return _find(text, "nhs_number")


_NHS = re.compile(NHS_CANDIDATE)


def first_nhs_number(text: str) -> str | None:
    """The first candidate in ``text`` that :func:`is_valid_nhs_number` accepts (its 10 digits), or None."""
    for groups in _NHS.findall(text):
        digits = "".join(groups)
        if is_valid_nhs_number(digits):
            return digits
    return None


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
    return _find(text, "date_of_birth")


_DOB = re.compile(DOB_PATTERN)


def first_date_of_birth(text: str) -> str | None:
    m = _DOB.search(text)
    if m is None:
        return None
    return m.group(1) if m.group(1) is not None else m.group(2)


# --- postcode -------------------------------------------------------------------------------
# The full UK postcode grammar (outward: area + district; inward: sector digit + unit letters).
POSTCODE_PATTERN = (
    r"(?i)\b(GIR ?0AA|[A-PR-UWYZ](?:[0-9]{1,2}|[A-HK-Y][0-9]{1,2}|[0-9][A-HJKPS-UW]|[A-HK-Y][0-9][ABEHMNPRV-Y])"
    r" ?(?!(?-i:[0-9](?:st|nd|rd|th)\b))[0-9][ABD-HJLNP-UW-Z]{2})\b"
)


def find_postcodes(text: pd.Series) -> pd.Series:
    """The first UK postcode per row, or missing."""
    return _find(text, "postcode")


_POSTCODE = re.compile(POSTCODE_PATTERN)


def first_postcode(text: str) -> str | None:
    m = _POSTCODE.search(text)
    return None if m is None else m.group(1)


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
    return _find(text, "name")


_NAME = re.compile(NAME_PATTERN)


def first_titled_name(text: str) -> str | None:
    for name in _NAME.findall(text):
        name = name.strip()
        if name not in NOT_NAMES:
            return name
    return None


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


# Each kind: its pre-filters (applied in turn) and its finder of one text.
PREFILTERS = {
    "nhs_number": (NHS_PREFILTER,),
    "date_of_birth": (DOB_PREFILTER, DOB_CUE_PREFILTER),
    "postcode": (POSTCODE_PREFILTER,),
    "name": (NAME_PREFILTER,),
}
FIRST = {
    "nhs_number": first_nhs_number,
    "date_of_birth": first_date_of_birth,
    "postcode": first_postcode,
    "name": first_titled_name,
}
_NONE = np.zeros(0, dtype=np.int64)


def text_array(text: pd.Series) -> pa.Array:
    """The column's text as one Arrow string array (null where missing), whatever the column held."""
    text = _as_text(text)
    array = getattr(text.array, "_pa_array", None)
    if array is None:
        return pa.array([v if isinstance(v, str) else None for v in text.tolist()], type=pa.large_string())
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array


def matching(array: pa.Array, prefilter: str) -> np.ndarray:
    """Positions of the values of ``array`` that match ``prefilter`` (RE2 syntax); missing never does."""
    if not len(array) or array.null_count == len(array):
        return _NONE
    hit = pc.match_substring_regex(array, prefilter)
    if hit.null_count:
        hit = hit.fill_null(False)
    return np.flatnonzero(hit.to_numpy(zero_copy_only=False))


def first_found(array: pa.Array, kinds=tuple(FIRST), *, candidates: np.ndarray | None = None
                ) -> dict[str, tuple[np.ndarray, list[str]]]:
    """Per kind: the positions in ``array`` where one was found, and the first one found there.

    ``candidates`` (positions) limits the search to those rows.  Each kind's pre-filters pick its
    rows in one Arrow pass each; only those rows' text goes through the finder, in Python.
    """
    rows = np.arange(len(array), dtype=np.int64) if candidates is None else candidates
    some = array if candidates is None else array.take(pa.array(candidates, type=pa.int64()))
    out = {}
    for kind in kinds:
        positions, values = rows, some
        for prefilter in PREFILTERS[kind]:
            keep = matching(values, prefilter)
            positions, values = positions[keep], values.take(pa.array(keep, type=pa.int64()))
        find = FIRST[kind]
        found_at, found = [], []
        for position, value in zip(positions.tolist(), values.to_pylist()):
            first = find(value)
            if first is not None:
                found_at.append(position)
                found.append(first)
        out[kind] = (np.array(found_at, dtype=np.int64), found)
    return out


def scan_array(array: pa.Array) -> tuple[np.ndarray, dict[str, tuple[np.ndarray, list[str]]]]:
    """(the rows that may hold an identifier, :func:`first_found` of those rows) for one column.

    The rows left out (no digit and no title) hold no identifier of any kind.
    """
    some = matching(array, ANY_PREFILTER)  # one pass over every row; the finders see the few left
    if not some.size:
        return some, {kind: (_NONE, []) for kind in FIRST}
    return some, first_found(array, candidates=some)


def _find(text: pd.Series, kind: str) -> pd.Series:
    """The first identifier of ``kind`` per row (pandas str, missing where none)."""
    text = _as_text(text)
    positions, values = first_found(text_array(text), (kind,))[kind]
    out = np.full(len(text), None, dtype=object)
    out[positions] = values
    return pd.Series(out, index=text.index, dtype="str")


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
    some, found = scan_array(text_array(text))
    index = text.index[some]
    columns = {}
    for kind, (positions, values) in found.items():
        column = np.full(len(some), None, dtype=object)
        column[np.searchsorted(some, positions)] = values
        columns[kind] = pd.Series(column, index=index, dtype="str")
    return pd.DataFrame(columns, index=index)


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
