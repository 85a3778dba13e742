"""Reading a collection page by page in id order (bus.mongo.page_by_id): every live
document once, in order, whatever the ids, and each page in a few bounded ranges."""
import random
import uuid

import pytest

from bus.errors import ValidationError
from bus.mongo import IdRanges, page_by_id
from tests.support.fakes import FakeCollection

LIVE = {"deleted": {"$ne": True}}


class CountingCollection(FakeCollection):
    """Records each query's ``_id`` condition: how many ranges a page took."""

    def __init__(self, name):
        super().__init__(name=name)
        self.queries = []

    def find(self, query=None, *args, **kwargs):
        self.queries.append((query or {}).get("_id") or {})
        return super().find(query, *args, **kwargs)


def collection_of(ids, deleted=(), name=None):
    collection = CountingCollection(name or uuid.uuid4().hex)
    for identifier in ids:
        collection.insert_one({"_id": identifier, "deleted": identifier in deleted})
    return collection


def read_all(collection, limit):
    pages, after = [], None
    while True:
        page = page_by_id(collection, LIVE, after, limit)
        pages.append(page)
        if len(page) < limit:
            return pages
        after = page[-1]["_id"]


@pytest.mark.parametrize("limit", [1, 7, 500])
def test_every_live_document_comes_once_in_id_order(limit):
    rng = random.Random(limit)
    ids = [f"{rng.getrandbits(128):032x}" for _ in range(1200)]
    # ids that are not uuid hex sort before, between and after the others
    odd = ["", "0", "event-1", "A" * 32, "e" * 31, "f" * 33, "zzz", "00ff"]
    deleted = set(rng.sample(ids, 100)) | {"event-1"}
    collection = collection_of(ids + odd, deleted)

    pages = read_all(collection, limit)

    read = [document["_id"] for page in pages for document in page]
    assert read == sorted(set(ids + odd) - deleted)
    assert all(len(page) == limit for page in pages[:-1])


def test_a_page_takes_one_or_two_ranges_once_the_density_is_known():
    rng = random.Random(7)
    collection = collection_of([f"{rng.getrandbits(128):032x}" for _ in range(20_000)])
    read_all(collection, 500)  # learns how dense the ids are
    collection.queries.clear()

    pages = read_all(collection, 500)

    assert sum(len(page) for page in pages) == 20_000
    assert len(collection.queries) <= 2 * len(pages)
    # each range is bounded but at the very end: none reads "every id after this one"
    open_ended = [ids for ids in collection.queries if "$lte" not in ids]
    assert open_ended and all(int(ids["$gt"], 16) > IdRanges.SPACE * 0.95 for ids in open_ended)


def test_ids_bunched_in_one_corner_cost_a_few_more_ranges_not_a_scan_each():
    bunched = [f"{0xabc << 116 | n:032x}" for n in range(3000)]  # consecutive ids
    collection = collection_of(bunched)

    pages = read_all(collection, 500)

    assert [d["_id"] for page in pages for d in page] == bunched
    assert len(collection.queries) <= 10 * len(pages)


def test_after_an_id_that_is_not_uuid_hex_it_reads_the_rest_at_once():
    collection = collection_of(["a1", "b2", "c3", f"{5:032x}"])

    assert [d["_id"] for d in page_by_id(collection, LIVE, "a1", 10)] == ["b2", "c3"]
    assert collection.queries == [{"$gt": "a1"}]


def test_the_ranges_cover_the_whole_id_space_in_order():
    ranges = IdRanges()
    walked = list(ranges.walk("c", None, lambda: 500))

    assert walked[0] == {"$lte": f"{IdRanges.FIRST_GUESS:032x}"}
    for before, after in zip(walked, walked[1:], strict=False):
        assert after["$gt"] == before["$lte"]
    assert "$lte" not in walked[-1]


@pytest.mark.parametrize("after_id, limit, field", [
    (5, 10, "after_id"), (None, 0, "limit"), (None, 1001, "limit"), (None, True, "limit")])
def test_bad_arguments_name_the_field(after_id, limit, field):
    with pytest.raises(ValidationError) as raised:
        page_by_id(collection_of([]), LIVE, after_id, limit)
    assert field in raised.value.details


def test_a_density_learnt_on_a_small_collection_does_not_outlive_its_growth():
    rng = random.Random(11)
    name = uuid.uuid4().hex
    read_all(collection_of([f"{rng.getrandbits(128):032x}" for _ in range(50)], name=name), 500)
    grown = collection_of([f"{rng.getrandbits(128):032x}" for _ in range(20_000)], name=name)

    pages = read_all(grown, 500)

    assert sum(len(page) for page in pages) == 20_000
    open_ended = [ids for ids in grown.queries if "$lte" not in ids]
    assert len(open_ended) <= 3  # the first page's, then only at the very end
    assert all(int(ids["$gt"], 16) > IdRanges.SPACE * 0.95 for ids in open_ended[1:])
