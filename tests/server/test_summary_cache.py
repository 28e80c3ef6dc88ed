"""The summary cache: bounded by count and by bytes, and it forgets summaries of an older state of the data.

The unit tests drive :class:`server.summary.SummaryCache` directly; the last one goes through the
API, where an upload must leave only summaries of the new state in memory.
"""

from __future__ import annotations

import threading

from flask import Flask
from flask.testing import FlaskClient

from server.summary import BYTES_PER_JSON_BYTE, SummaryCache, cache_for

from .support import area_token, bearer, site_token, upload

STATE = "state-1"


def test_entries_past_the_byte_budget_go_least_recently_used_first() -> None:
    cache = SummaryCache(size=10, max_bytes=100)
    cache.put("a", "A", nbytes=40, generation=STATE)
    cache.put("b", "B", nbytes=40, generation=STATE)
    assert cache.get("a") == "A"  # "a" is now the most recently used
    cache.put("c", "C", nbytes=40, generation=STATE)  # 120 bytes: "b" goes
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == ("A", None, "C")
    assert cache.bytes == 80 and len(cache) == 2


def test_the_count_still_bounds_small_entries() -> None:
    cache = SummaryCache(size=3, max_bytes=10**9)
    for key in "abcde":
        cache.put(key, key.upper(), nbytes=1, generation=STATE)
    assert [cache.get(k) for k in "abcde"] == [None, None, "C", "D", "E"]
    assert cache.bytes == 3


def test_the_newest_entry_is_kept_even_when_it_alone_is_over_the_budget() -> None:
    cache = SummaryCache(size=10, max_bytes=100)
    cache.put("small", "S", nbytes=10, generation=STATE)
    cache.put("huge", "H", nbytes=500, generation=STATE)
    assert cache.get("huge") == "H" and cache.get("small") is None
    assert cache.bytes == 500


def test_putting_the_same_key_again_counts_its_bytes_once() -> None:
    cache = SummaryCache(size=10, max_bytes=100)
    cache.put("a", "A1", nbytes=60, generation=STATE)
    cache.put("a", "A2", nbytes=70, generation=STATE)  # two requests computed the same summary
    assert cache.get("a") == "A2" and cache.bytes == 70 and len(cache) == 1


def test_an_entry_of_a_new_state_of_the_data_drops_every_older_one() -> None:
    cache = SummaryCache(size=10, max_bytes=10**9)
    cache.put("north", "N1", nbytes=5, generation="before the upload")
    cache.put("south", "S1", nbytes=5, generation="before the upload")
    cache.put("north-new", "N2", nbytes=7, generation="after the upload")
    assert cache.get("north") is None and cache.get("south") is None and cache.get("north-new") == "N2"
    assert cache.bytes == 7 and len(cache) == 1


def test_clear_empties_it_and_its_byte_count() -> None:
    cache = SummaryCache(size=10, max_bytes=100)
    cache.put("a", "A", nbytes=50, generation=STATE)
    cache.clear()
    assert cache.get("a") is None and cache.bytes == 0 and len(cache) == 0


def test_puts_from_many_threads_keep_the_byte_count_right() -> None:
    cache = SummaryCache(size=8, max_bytes=1_000)

    def put_many(start: int) -> None:
        for i in range(start, start + 500):
            cache.put(i % 40, i, nbytes=1 + i % 300, generation=STATE)

    threads = [threading.Thread(target=put_many, args=(k * 500,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    kept = [cache._items[key][1] for key in cache._items]  # noqa: SLF001 - the sizes it holds
    assert cache.bytes == sum(kept) and len(kept) <= 8
    assert sum(kept) <= 1_000 or len(kept) == 1


def test_after_an_upload_only_summaries_of_the_new_data_stay_cached(app: Flask, client: FlaskClient,
                                                                    workbooks) -> None:  # noqa: ANN001
    token = site_token(app, "OAK", name="OAK House", area="North")
    site_token(app, "BIR", name="BIR House", area="South")
    lead = bearer(area_token(app, "North"))
    upload(client, token, workbooks.path("OAK", 1))
    cache = cache_for(app)
    windows = ("from=2025-11&to=2026-10", "from=2026-01&to=2026-10")
    bodies = [client.get(f"/api/v1/summary?{query}", headers=lead) for query in windows]
    assert all(b.status_code == 200 for b in bodies)
    assert len(cache) == 2
    # Each entry is weighed by its JSON (what the API sent) and the objects made from it.
    assert cache.bytes == sum(len(b.get_data(as_text=True)) for b in bodies) * BYTES_PER_JSON_BYTE
    upload(client, token, workbooks.path("OAK", 2))  # new figures: both summaries are of the old data now
    newest = client.get(f"/api/v1/summary?{windows[0]}", headers=lead)
    assert newest.status_code == 200 and len(cache) == 1
    assert cache.bytes == len(newest.get_data(as_text=True)) * BYTES_PER_JSON_BYTE
    again = client.get(f"/api/v1/summary?{windows[0]}", headers=lead)  # from the cache
    assert again.get_data() == newest.get_data() and len(cache) == 1


def test_free_memory_is_trimmed_off_the_request_one_trim_at_a_time(monkeypatch) -> None:  # noqa: ANN001
    from server import summary

    started, release = threading.Event(), threading.Event()
    calls = []

    def slow_trim(pad: int) -> int:
        calls.append(pad)
        started.set()
        release.wait(5)
        return 1

    monkeypatch.setattr(summary, "_MALLOC_TRIM", slow_trim)
    summary.release_free_memory()  # returns at once: the trim runs in its own thread
    assert started.wait(5) and calls == [0]
    summary.release_free_memory()  # a trim is running: none is queued behind it
    release.set()
    for _ in range(500):
        if not summary._TRIMMING.locked():  # noqa: SLF001
            break
        threading.Event().wait(0.01)
    assert calls == [0] and not summary._TRIMMING.locked()  # noqa: SLF001
    started.clear()
    summary.release_free_memory()  # the next summary's trim runs again
    assert started.wait(5) and calls == [0, 0]


def test_without_glibc_releasing_memory_is_only_arrows_pool(monkeypatch) -> None:  # noqa: ANN001
    from server import summary

    monkeypatch.setattr(summary, "_MALLOC_TRIM", None)
    summary.release_free_memory()
    assert not summary._TRIMMING.locked()  # noqa: SLF001
