"""Pictures of the references in the enrolment store, on both engines: kept, checked, and absent from older stores."""

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inkvoice.core.errors import DataError
from inkvoice.signature.enrollment import (
    MAX_THUMBNAIL_BYTES,
    SCHEMA_VERSION,
    THUMBNAIL_SIZE,
    StoreDamagedError,
    open_store,
    reference_thumbnail,
)
from inkvoice.signature.features import check_parameters
from tests.signature.test_enrollment import _alter, _entries

PARAMETERS = check_parameters({})
SAMPLES = Path(__file__).resolve().parents[2] / "data" / "signatures"


@pytest.fixture(scope="module")
def pictures():
    return [reference_thumbnail(SAMPLES / "writer5" / "genuine" / f"0{n}.png") for n in (1, 2, 3)]


def _with_pictures(entries, pictures):
    return [(*entry, picture) for entry, picture in zip(entries, pictures)]


def _schema(location):
    with open_store(location, PARAMETERS, create=False) as store:
        return dict(store._execute("SELECT key, value FROM settings").fetchall())["schema"]


def test_a_thumbnail_is_a_small_png_of_the_cleaned_signature(pictures, tmp_path):
    for picture in pictures:
        image = Image.open(io.BytesIO(picture))
        assert image.format == "PNG" and image.mode == "L"
        assert image.width <= THUMBNAIL_SIZE[0] and image.height <= THUMBNAIL_SIZE[1]
        assert max(image.width / THUMBNAIL_SIZE[0], image.height / THUMBNAIL_SIZE[1]) > 0.99  # fills the box
        assert len(picture) < 8 * 1024
        pixels = np.asarray(image)
        assert pixels.min() < 60 and np.median(pixels) == 255  # dark ink on a white page
        # Cropped to the ink: every edge of the picture touches a stroke.
        ink = pixels < 200
        assert ink[0].any() and ink[-1].any() and ink[:, 0].any() and ink[:, -1].any()
    blank = tmp_path / "blank.png"
    Image.new("L", (300, 120), 240).save(blank)
    with pytest.raises(DataError, match="blank.png: blank page"):
        reference_thumbnail(blank)


def test_thumbnails_are_kept_in_order_and_covered_by_the_integrity_check(store_location, pictures):
    with open_store(store_location, PARAMETERS) as store:
        entries = _with_pictures(_entries(3), pictures) + _entries(1, start=3)  # the last one without a picture
        assert store.add("ann", entries, "model1") == (4, 4, [])
    with open_store(store_location, PARAMETERS, create=False) as store:
        assert store.thumbnails_of("ann") == [("s0.png", pictures[0]), ("s1.png", pictures[1]),
                                              ("s2.png", pictures[2]), ("s3.png", None)]
        assert store.references("ann").shape == (4, 5)
    # A picture swapped, removed or added behind inkvoice's back is damage, as changed features are.
    for statement in ("UPDATE refs SET thumbnail = (SELECT thumbnail FROM refs WHERE source = 's1.png') "
                      "WHERE source = 's0.png'",
                      "UPDATE refs SET thumbnail = NULL WHERE source = 's0.png'",
                      "UPDATE refs SET thumbnail = (SELECT thumbnail FROM refs WHERE source = 's2.png') "
                      "WHERE source = 's3.png'"):
        with open_store(store_location, PARAMETERS) as store:
            store.remove("ann")
            store.add("ann", entries, "model1")
        _alter(store_location, statement)
        with open_store(store_location, PARAMETERS, create=False) as store:
            with pytest.raises(StoreDamagedError, match="writer 'ann' do not match their digest"):
                store.thumbnails_of("ann")
            with pytest.raises(StoreDamagedError):
                store.references("ann")


def test_a_bad_thumbnail_enrols_nothing(store_location, pictures):
    with open_store(store_location, PARAMETERS) as store:
        for bad, message in ((b"GIF89a" + bytes(100), "s1.png: its thumbnail is not a PNG"),
                             (pictures[1] + bytes(MAX_THUMBNAIL_BYTES), "s1.png: its thumbnail is not a PNG of at most")):
            entries = _with_pictures(_entries(3), [pictures[0], bad, pictures[2]])
            with pytest.raises(DataError, match=message):
                store.add("ann", entries, "model1")
        assert store.writers() == []


def test_a_store_made_before_thumbnails_opens_and_its_first_enrolment_upgrades_it(store_location, pictures):
    with open_store(store_location, PARAMETERS) as store:
        store.add("ann", _entries(3), "model1")
    # The store as the previous version made it: no thumbnail column, tables of version 2.
    _alter(store_location, "ALTER TABLE refs DROP COLUMN thumbnail")
    _alter(store_location, "UPDATE settings SET value = '2' WHERE key = 'schema'")
    with open_store(store_location, PARAMETERS, create=False) as store:
        assert not store.thumbnails
        assert store.references("ann").shape == (3, 5)  # the old digests still hold
        assert store.thumbnails_of("ann") == [("s0.png", None), ("s1.png", None), ("s2.png", None)]
    assert _schema(store_location) == "2"  # reading changes nothing
    with open_store(store_location, PARAMETERS) as store:
        assert store.thumbnails
        assert store.add("bob", _with_pictures(_entries(3, start=5), pictures), "model1") == (3, 3, [])
        assert store.add("ann", _with_pictures(_entries(1, start=3), pictures), "model1") == (1, 4, [])
    assert _schema(store_location) == str(SCHEMA_VERSION)
    with open_store(store_location, PARAMETERS, create=False) as store:
        assert [picture for _, picture in store.thumbnails_of("ann")] == [None, None, None, pictures[0]]
        assert [picture for _, picture in store.thumbnails_of("bob")] == pictures
        assert store.references("ann").shape == (4, 5)
