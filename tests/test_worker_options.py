"""Per-stream options: what a config file or an API call may set, and errors that name the key."""

from __future__ import annotations

import pytest

from server.inference.options import InferenceOptions
from server.options import StreamOptions, tracker_kinds


def test_defaults_are_ultralytics_defaults_with_segtrack() -> None:
    options = StreamOptions.from_mapping({})
    assert options == StreamOptions()
    assert (options.conf, options.iou, options.max_det, options.tracker) == (0.25, 0.7, 300, "segtrack")
    assert options.tracker_config()["track_buffer"] == 150


def test_every_option_can_be_set_from_a_mapping() -> None:
    options = StreamOptions.from_mapping(
        {
            "conf": 0.4,
            "iou": 0.5,
            "classes": ["disc", "square", "disc"],
            "imgsz": 320,
            "max_det": 20,
            "tracker": "botsort",
            "tracker_settings": {"track_buffer": 60, "match_thresh": 0.7, "gmc_method": "none"},
        }
    )
    assert options.classes == ("disc", "square")
    assert options.tracker_config()["gmc_method"] == "none"
    assert dict(options.tracker_settings) == {"gmc_method": "none", "match_thresh": 0.7, "track_buffer": 60}
    assert StreamOptions.from_mapping(options.to_json()) == options, "to_json round-trips"
    assert hash(options) == hash(StreamOptions.from_mapping(options.to_json()))


def test_a_comma_separated_class_list_is_accepted() -> None:
    assert StreamOptions.from_mapping({"classes": "disc, triangle"}).classes == ("disc", "triangle")


def test_stream_values_override_the_defaults_they_are_read_over() -> None:
    defaults = StreamOptions.from_mapping({"conf": 0.5, "tracker_settings": {"track_buffer": 90}})
    stream = StreamOptions.from_mapping({"iou": 0.6, "tracker_settings": {"min_overlap": 0.2}}, defaults)
    assert (stream.conf, stream.iou) == (0.5, 0.6)
    assert dict(stream.tracker_settings) == {"min_overlap": 0.2, "track_buffer": 90}
    other = StreamOptions.from_mapping({"tracker": "ocsort"}, defaults)
    assert other.tracker_settings == (), "settings of another tracker kind are not carried over"


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"conf": 1.5}, "conf:"),
        ({"conf": "high"}, "conf:"),
        ({"iou": -0.1}, "iou:"),
        ({"imgsz": 8}, "imgsz:"),
        ({"imgsz": True}, "imgsz:"),
        ({"imgsz": 33}, "imgsz:"),
        ({"max_det": 0}, "max_det:"),
        ({"classes": [1, 2]}, "classes:"),
        ({"tracker": "sort"}, "tracker:"),
        ({"tracker_settings": {"track_bufer": 10}}, "tracker_settings.track_bufer:"),
        ({"tracker_settings": {"track_buffer": "long"}}, "tracker_settings.track_buffer:"),
        ({"tracker_settings": {"track_buffer": float("inf")}}, "tracker_settings.track_buffer:"),  # not JSON
        ({"tracker_settings": {"track_buffer": 10**400}}, "tracker_settings.track_buffer:"),
        ({"tracker_settings": {"fuse_score": 1}}, "tracker_settings.fuse_score:"),
        ({"tracker": "ocsort", "tracker_settings": {"delta_t": 2.5}}, "tracker_settings.delta_t: expected a whole"),
        ({"tracker_settings": {"track_buffer": 60.5}}, "tracker_settings.track_buffer: expected a whole number"),
        ({"tracker_settings": {"track_buffer": -1}}, "tracker_settings.track_buffer: expected a whole number"),
        ({"tracker_settings": {"with_reid": True}}, "tracker_settings.with_reid:"),
        # 5 meant for 0.5: a stream holding its detections to it tracked nothing, without a word.
        (
            {"tracker_settings": {"track_high_thresh": 5}},
            "tracker_settings.track_high_thresh: expected a value from 0 to 1",
        ),
        ({"tracker_settings": {"mask_weight": 1.5}}, "tracker_settings.mask_weight: expected a value from 0 to 1"),
        ({"tracker": "tracktrack", "tracker_settings": {"tai_thr": 2}}, "tracker_settings.tai_thr: expected a value"),
        ({"tracker_settings": [1]}, "tracker_settings:"),
        ({"confidence": 0.5}, "confidence:"),
    ],
)
def test_a_bad_value_is_refused_naming_its_key(values: dict[str, object], key: str) -> None:
    with pytest.raises(ValueError) as raised:
        StreamOptions.from_mapping(values)
    assert str(raised.value).startswith(key), str(raised.value)


def test_a_whole_number_is_a_value_for_a_setting_whose_default_is_a_fraction() -> None:
    options = StreamOptions.from_mapping({"tracker": "ocsort", "tracker_settings": {"delta_t": 2, "inertia": 1}})
    assert dict(options.tracker_settings) == {"delta_t": 2, "inertia": 1}


def test_the_tracker_error_lists_every_ultralytics_tracker() -> None:
    with pytest.raises(ValueError) as raised:
        StreamOptions.from_mapping({"tracker": "sort"})
    assert all(kind in str(raised.value) for kind in tracker_kinds())
    assert {"bytetrack", "botsort", "ocsort"} <= set(tracker_kinds())


def test_a_tracker_named_as_ultralytics_names_its_yaml_is_told_the_name() -> None:
    """``model.track(tracker="bytetrack.yaml")`` is how ultralytics' users know it."""
    with pytest.raises(ValueError, match=r"without \.yaml: 'bytetrack'\)$"):
        StreamOptions.from_mapping({"tracker": "bytetrack.yaml"})
    with pytest.raises(ValueError) as raised:
        StreamOptions.from_mapping({"tracker": "sort.yaml"})
    assert "without .yaml" not in str(raised.value), "no hint to a tracker that does not exist"


def test_global_options_check_device_and_batch_and_give_stream_defaults() -> None:
    options = InferenceOptions(imgsz=416, conf=0.3, device="cuda:1", half=True, max_batch=4)
    assert options.use_half, "half precision on GPUs"
    for not_a_gpu in ("auto", "cpu", "mps"):  # auto is made a device on the inference thread first
        assert not InferenceOptions(half=True, device=not_a_gpu).use_half, not_a_gpu
    assert options.stream_defaults() == StreamOptions(conf=0.3, imgsz=416)
    with pytest.raises(ValueError, match=r"^device:"):
        InferenceOptions(device="gpu0")
    with pytest.raises(ValueError, match=r"^max_batch:"):
        InferenceOptions(max_batch=0)


@pytest.mark.parametrize("device", ["cuda:0,1", "cpux", "cuda:1 ", "0,1", "cpu\n", "cuda:0\n"])
def test_a_device_that_only_begins_like_one_is_refused(device: str) -> None:
    """Matched on its valid beginning only, ``cuda:0,1`` would pass here and start-up would fail later on
    ``int('0,1')``, in Python's words instead of a line naming the setting; so would ``"cpu\\n"`` (a TOML
    string's escape), which ``$`` lets through as it also matches before a final newline."""
    with pytest.raises(ValueError, match=r"^device:"):
        InferenceOptions(device=device)
