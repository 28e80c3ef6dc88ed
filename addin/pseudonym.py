"""Pseudonymous person references: keyed HMAC-SHA256 of a name, never the name and never a plain hash.

A plain SHA-256 of a name or NHS number can be reversed by trying candidates
(../shared/spec/security.md), so a reference is an HMAC under a secret key
kept apart from the data.  The site code is part of the message: the same name
gives the same reference within a site (so repeat events for one person line
up) and different references at different sites or under another key.

The key comes from, in order: an explicit key file (``--key-file``), the
environment variable ``NEARMISS_PSEUDONYM_KEY``, or ``pseudonym.key`` in the
instance folder (``NEARMISS_INSTANCE`` or ``instance/`` at the project root,
which git ignores).  :func:`create_key_file` makes a new random key there.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from pathlib import Path

from .value_maps import normalise

ENV_KEY = "NEARMISS_PSEUDONYM_KEY"
ENV_INSTANCE = "NEARMISS_INSTANCE"
KEY_FILE_NAME = "pseudonym.key"
MIN_KEY_BYTES = 16
REF_HEX_DIGITS = 10  # 40 bits: collisions are negligible for the few hundred people of one site


class PseudonymKeyError(Exception):
    """The pseudonym key is missing or unusable (the message says how to fix it; it never shows the key)."""


class MissingKey(PseudonymKeyError):
    pass


def instance_dir() -> Path:
    """The instance folder: ``$NEARMISS_INSTANCE`` or ``instance/`` next to the packages (as Flask's default)."""
    env = os.environ.get(ENV_INSTANCE, "").strip()
    return Path(env) if env else Path(__file__).resolve().parents[1] / "instance"


def default_key_file() -> Path:
    return instance_dir() / KEY_FILE_NAME


def _check(key: bytes, where: str) -> bytes:
    key = key.strip()
    if len(key) < MIN_KEY_BYTES:
        raise PseudonymKeyError(f"The pseudonym key in {where} is too short: use at least {MIN_KEY_BYTES} characters "
                        "(a new random key file is the safest choice).")
    return key


def read_key_file(path: str | Path) -> bytes:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PseudonymKeyError(f"Cannot read the pseudonym key file {path}: {exc.strerror or exc}.") from None
    return _check(data, str(path))


def load_key(key_file: str | Path | None = None) -> bytes:
    """The pseudonym key: ``key_file``, else ``$NEARMISS_PSEUDONYM_KEY``, else the instance folder's key file."""
    if key_file is not None:
        return read_key_file(key_file)
    env = os.environ.get(ENV_KEY)
    if env:
        return _check(env.encode("utf-8"), f"${ENV_KEY}")
    default = default_key_file()
    if default.is_file():
        return read_key_file(default)
    raise MissingKey(f"No pseudonym key: set {ENV_KEY}, pass --key-file, or keep a key file at {default}.")


def create_key_file(path: str | Path | None = None) -> Path:
    """Write a new random 256-bit key (hex) readable by the owner only; never replaces an existing file."""
    path = Path(path) if path is not None else default_key_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(32) + "\n")
    return path


def name_key(value: object) -> str:
    """The part of a cell that identifies the person: case, spacing, punctuation and '(Room 4)' ignored."""
    text = re.sub(r"\([^)]*\)|\[[^\]]*\]", " ", str(value))
    return normalise(text)


class Pseudonymiser:
    """Turns names (or any identifier) into ``SITE-P-XXXXXXXXXX`` references for one site."""

    def __init__(self, key: bytes, site_code: str):
        if len(key) < MIN_KEY_BYTES:
            raise PseudonymKeyError(f"The pseudonym key must be at least {MIN_KEY_BYTES} bytes.")
        self._key = bytes(key)
        self.site_code = site_code.strip().upper()

    def ref(self, value: object) -> str | None:
        text = name_key(value)
        if not text:
            return None
        message = f"nearmiss-person-ref\x1f{self.site_code}\x1f{text}".encode("utf-8")
        digest = hmac.new(self._key, message, hashlib.sha256).hexdigest()
        return f"{self.site_code}-P-{digest[:REF_HEX_DIGITS].upper()}"

    def __repr__(self) -> str:  # never shows the key
        return f"Pseudonymiser(site_code={self.site_code!r})"


# --- names in cells -----------------------------------------------------------------------------------------

_PART = r"(?:[A-Z]['’])?[A-Z][a-z]*[A-Z]?[a-z]+"  # Amy, O'Test, McTest
_WORD = rf"{_PART}(?:-{_PART})*"  # Mary-Jane
_TITLE = r"(?:Mr|Mrs|Ms|Miss|Mx|Dr)\.?"
_NAME_PATTERNS = (
    re.compile(rf"^(?:{_TITLE}\s+)?{_WORD}(?:\s+{_WORD}){{1,2}}$"),  # Amy Example, Mrs Amy Example
    re.compile(rf"^{_TITLE}\s+{_WORD}$"),  # Mrs Example
    re.compile(rf"^{_WORD},\s*{_WORD}$"),  # Example, Amy
    re.compile(rf"^[A-Z]\.?\s+{_WORD}$|^{_WORD}\s+[A-Z]\.?$"),  # A Example, Amy E.
    re.compile(r"^[A-Z]\.\s?[A-Z]\.?(?:\s?[A-Z]\.?)?$"),  # J.S., J. S.
)
_INITIALS_BARE = re.compile(r"^[A-Z]{2,3}$")

# Header words that say a column holds people's names, and those that say it is about the person cared for.
NAME_HEADER_WORDS = frozenset({"name", "names", "initials", "surname", "forename", "forenames", "firstname"})
PERSON_HEADER_WORDS = frozenset({"resident", "residents", "service", "client", "person", "patient", "tenant",
                                 "customer", "individual", "su", "initials"})
STAFF_HEADER_WORDS = frozenset({"staff", "reported", "reporter", "completed", "by", "witness", "witnessed",
                                "manager", "carer", "owner", "signed", "author", "employee", "nurse", "who"})

# Words that turn up capitalised in logs but are not names (a cell holding any of them is not a name).
COMMON_WORDS = frozenset("""
no yes none nil low minor moderate major severe fatal harm injury injuries near miss incident fall falls slip trip
medication med meds error errors drug drugs pressure ulcer sore care home own room bedroom lounge dining bathroom
toilet corridor garden kitchen hallway stairs hall community hospital day service centre other open closed
complete completed done in progress under review not yet started cancelled senior carer assistant nurse
team leader deputy manager registered clinical lead training support worker night day morning afternoon evening
staff member agency domiciliary family visitor gp doctor paramedic ambulance police safeguarding behaviour
infection equipment environment choking death self unwitnessed witnessed found floor missed late visit call
wrong dose time person medicine signed stock monday tuesday wednesday thursday friday saturday
sunday january february march april may june july august september october november december jan feb mar apr
jun jul aug sep sept oct nov dec total the and of to at on for with see notes n/a unknown tbc awaiting pending
male female high medium amber red green the new old main front back upstairs downstairs unit wing floor
ground first second house lodge court view manor
""".split())


TITLES = frozenset({"mr", "mrs", "ms", "miss", "mx", "dr"})


def looks_like_name(value: object, *, allow_bare_initials: bool = False) -> bool:
    """True for 'Amy Example', 'Mrs Example', 'Example, Amy', 'A. Example', 'J.S.' (and 'JS' when allowed)."""
    if not isinstance(value, str):
        return False
    text = " ".join(value.split())
    if not text or len(text) > 60 or any(ch.isdigit() for ch in text):
        return False
    if allow_bare_initials and _INITIALS_BARE.match(text):
        return True
    if not any(p.match(text) for p in _NAME_PATTERNS):
        return False
    words = {w.lower().strip(".,'’") for w in re.split(r"[\s,]+", text)} - TITLES
    return not (words & COMMON_WORDS)


def header_says_names(header: str) -> bool:
    return bool(set(normalise(header).split()) & NAME_HEADER_WORDS)


def header_says_person(header: str) -> bool:
    words = set(normalise(header).split())
    return bool(words & PERSON_HEADER_WORDS) and not (words & STAFF_HEADER_WORDS - {"who"})


def header_says_staff(header: str) -> bool:
    words = set(normalise(header).split())
    return bool(words & STAFF_HEADER_WORDS) and not (words & (PERSON_HEADER_WORDS - {"initials"}))


class NameScrubber:
    """Replaces names seen in name columns wherever they turn up in free text.

    A full name becomes the person's reference; a single part of a name
    ("Amy") becomes ``[name]``, since it may belong to someone else.
    """

    def __init__(self) -> None:
        self._full: dict[str, str] = {}  # exact text as written -> replacement
        self._parts: set[str] = set()
        self._pattern: tuple | None = None
        self.replacements = 0

    def add(self, raw: object, ref: str | None) -> None:
        if not isinstance(raw, str) or not raw.strip():
            return
        text = " ".join(raw.split())
        core = " ".join(re.sub(r"\([^)]*\)|\[[^\]]*\]", " ", text).split())
        for variant in {text, core}:
            if len(variant) >= 2:
                self._full[variant] = ref or "[name]"
        for part in re.split(r"[\s,]+", core):
            part = part.strip(".,'’")
            if len(part) >= 3 and part[0].isupper() and part.lower() not in COMMON_WORDS | TITLES:
                self._parts.add(part)
        self._pattern = None

    def __bool__(self) -> bool:
        return bool(self._full)

    def _compile(self) -> tuple[re.Pattern | None, re.Pattern | None]:
        if self._pattern is None:
            full = sorted(self._full, key=len, reverse=True)
            parts = sorted(self._parts - set(full), key=len, reverse=True)
            self._pattern = (
                re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, full)) + r")(?!\w)", re.IGNORECASE)
                if full else None,
                # Parts of names match only as written ("Example", not "for example").
                re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, parts)) + r")(?!\w)") if parts else None,
            )
        return self._pattern

    def scrub(self, text: object) -> object:
        """``text`` with every known name replaced (non-text values are returned as they are)."""
        if not isinstance(text, str) or not self._full:
            return text
        full, parts = self._compile()
        lowered = {k.lower(): v for k, v in self._full.items()}

        def replace(match: re.Match) -> str:
            self.replacements += 1
            return lowered.get(match.group(0).lower(), "[name]")

        if full is not None:
            text = full.sub(replace, text)
        if parts is not None:
            text = parts.sub(replace, text)
        return text

    def contains_name(self, text: object) -> bool:
        if not isinstance(text, str) or not self._full:
            return False
        return any(p is not None and p.search(text) for p in self._compile())
