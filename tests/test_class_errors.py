"""A class filter naming a class the model lacks: one short start-up line, whatever the model's size.

The stream's ``classes`` and a zone's or line's share the wording (`server.analytics.shapes.unknown_class`).
The class lists are the ones ultralytics ships for COCO (80) and Objects365 (365).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import ultralytics
import yaml

from server.analytics.shapes import Line, Zone, check_classes
from server.config import Settings
from server.http.pages import viewer_settings
from server.scene import CLASS_NAMES
from server.tracking.filters import class_ids

DATASETS = Path(ultralytics.__file__).parent / "cfg" / "datasets"
#: The longest error a person should have to read for one misspelt class.
MAX_ERROR_CHARS = 500
SQUARE = ((0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 10.0))
ACROSS = ((0.0, 5.0), (10.0, 5.0))


def _names(dataset: str) -> dict[int, str]:
    names = yaml.safe_load((DATASETS / dataset).read_text())["names"]
    assert isinstance(names, dict)
    return {int(class_id): str(name) for class_id, name in names.items()}


def _error(class_names: dict[int, str], name: str) -> str:
    with pytest.raises(ValueError) as raised:
        class_ids(class_names, (name,))
    return str(raised.value)


def test_a_class_a_365_class_model_lacks_is_one_short_line_saying_how_many_and_where_they_are() -> None:
    names = _names("Objects365.yaml")
    assert len(names) == 365
    message = _error(names, "disc")
    assert message.startswith("classes: the model has no class 'disc'"), message
    assert len(message) < MAX_ERROR_CHARS, message
    assert message.endswith(", ... (365 in all; a running segcast lists them at GET /api/viewer)"), message
    # Where it sends the reader, every one of them is listed.
    listed = viewer_settings(Settings(), names, config_writable=False)["classes"]
    assert listed == [names[class_id] for class_id in sorted(names)]


def test_a_near_miss_of_a_coco_class_asks_whether_it_was_meant() -> None:
    message = _error(_names("coco.yaml"), "persn")
    assert message.startswith("classes: the model has no class 'persn' (did you mean 'person'?); it knows "), message
    assert message.endswith("(80 in all; a running segcast lists them at GET /api/viewer)"), message
    assert len(message) < MAX_ERROR_CHARS, message


def test_a_zone_or_line_class_the_model_lacks_is_told_as_the_streams_is() -> None:
    names = _names("Objects365.yaml")
    zone = Zone("bay", SQUARE, classes=("Person", "persn"))
    with pytest.raises(ValueError) as raised:
        check_classes((zone,), (), names)
    message = str(raised.value)
    assert message == "zones[0]." + _error(names, "persn"), message
    assert "(did you mean 'Person'" in message
    assert "(365 in all; a running segcast lists them at GET /api/viewer)" in message
    assert len(message) < MAX_ERROR_CHARS, message

    line = Line("gate", ACROSS, classes=("carr",))
    with pytest.raises(ValueError) as raised:
        check_classes((), (line,), _names("coco.yaml"))
    assert str(raised.value).startswith("lines[0].classes: the model has no class 'carr' (did you mean 'car'"), raised


def test_a_small_models_classes_are_all_listed_as_before() -> None:
    names = dict(enumerate(CLASS_NAMES))
    assert _error(names, "person") == "classes: the model has no class 'person'; it knows disc, square, triangle"
    with pytest.raises(ValueError) as raised:
        check_classes((), (Line("gate", ACROSS, classes=("person",)),), names)
    assert str(raised.value) == "lines[0].classes: the model has no class 'person'; it knows disc, square, triangle"
