"""``segcast import-frigate``: a Frigate config.yml as a segcast config file that segcast starts with.

Each test writes a Frigate config as its users write them (detect inputs with roles, ``{FRIGATE_*}``
placeholders, per-object filters in pixels, masks, zones in pixels and in fractions, MQTT) and reads the
result back the way ``segcast serve --config`` does, so what is checked is what segcast would run.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from server.analytics.shapes import Units
from server.config import Settings, load_config
from server.migration.frigate import FrigateConfigError, convert
from server.options import ClassFilter
from tests.support.cli_in_process import run_cli

EXIT_STARTUP_ERROR = 2

FRIGATE = textwrap.dedent(
    """\
    mqtt:
      host: 192.168.1.10
      user: frigate
      password: "{FRIGATE_MQTT_PASSWORD}"
    detect:
      fps: 5
    objects:
      track: [person, car]
      filters:
        person:
          min_area: 5000
          threshold: 0.7
    go2rtc:
      streams:
        backyard:
          - rtsp://viewer:{FRIGATE_RTSP_PASSWORD}@10.0.0.8:554/stream2
          - "ffmpeg:backyard#audio=opus"
    cameras:
      driveway:
        ffmpeg:
          inputs:
            - path: rtsp://admin:{FRIGATE_RTSP_PASSWORD}@10.0.0.7:554/cam/realmonitor?channel=1&subtype=1
              roles: [detect]
            - path: rtsp://admin:{FRIGATE_RTSP_PASSWORD}@10.0.0.7:554/cam/realmonitor?channel=1&subtype=0
              roles: [record]
        detect:
          width: 1280
          height: 720
        objects:
          track: [person, car, dog]
          filters:
            person:
              min_area: 2000
            car:
              min_area: 15000
              min_score: 0.5
              mask: 0,0,400,0,400,200,0,200
          mask:
            - 1000,0,1280,0,1280,100,1000,100
        zones:
          porch:
            coordinates: 640,720,640,360,1280,360,1280,720
            objects: [person, bicycle]
            loitering_time: 10
        motion:
          mask: 0,0,100,0,100,100
      backyard:
        ffmpeg:
          inputs:
            - path: rtsp://127.0.0.1:8554/backyard
        zones:
          lawn:
            coordinates: 0.1,0.5,0.9,0.5,0.9,1,0.1,1
          shed:
            coordinates:
              - 10,20
              - 110,20
              - 110,90
      garage:
        enabled: false
        ffmpeg:
          inputs: [{path: "rtsp://10.0.0.9/stream"}]
    """
)


def converted(tmp_path: Path, frigate: str = FRIGATE) -> tuple[Settings, list[str]]:
    """The segcast settings ``frigate`` converts to, as ``segcast serve --config`` reads them, and the notes."""
    import yaml

    conversion = convert(yaml.safe_load(frigate))
    path = tmp_path / "segcast.toml"
    path.write_text(conversion.text)
    return load_config(path), conversion.notes


def test_each_camera_is_a_stream_of_its_detect_input_with_its_objects_and_rate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRIGATE_RTSP_PASSWORD", "s3cret")
    settings, notes = converted(tmp_path)
    driveway, backyard = settings.streams
    assert driveway.stream_id == "driveway"
    assert driveway.uri == "rtsp://admin:s3cret@10.0.0.7:554/cam/realmonitor?channel=1&subtype=1", "the detect role"
    assert driveway.options.classes == ("person", "car", "dog") and backyard.options.classes == ("person", "car")
    assert driveway.options.process_fps == backyard.options.process_fps == 5
    assert "camera garage: disabled in Frigate, or its detection is: left out" in notes
    assert [s.stream_id for s in settings.streams] == ["driveway", "backyard"]
    assert backyard.uri == "rtsp://viewer:s3cret@10.0.0.8:554/stream2", "go2rtc's source, not Frigate's restream"
    assert not any("go2rtc" in note for note in notes)
    assert settings.events.mqtt is not None and settings.events.mqtt.host == "192.168.1.10"
    assert settings.events.mqtt.username == "frigate" and not settings.events.mqtt.tls
    assert any(note.startswith("{FRIGATE_MQTT_PASSWORD}: not set here") for note in notes)


def test_filters_merge_over_the_global_ones_and_their_pixels_become_shares_of_the_detect_size(tmp_path: Path) -> None:
    settings, notes = converted(tmp_path)
    driveway, backyard = settings.streams
    assert dict(driveway.options.class_filters) == {
        "person": ClassFilter(conf=0.7, min_area=round(2000 / (1280 * 720), 6)),  # its own area, the global score
        "car": ClassFilter(conf=0.5, min_area=round(15000 / (1280 * 720), 6)),  # min_score where no threshold
    }
    assert dict(backyard.options.class_filters) == {"person": ClassFilter(conf=0.7)}
    assert any("backyard.objects.filters.person.min_area: 5000 px, but the detect size" in note for note in notes)


def test_masks_are_ignore_zones_and_zones_are_zones_in_fractions_of_the_detect_size(tmp_path: Path) -> None:
    settings, notes = converted(tmp_path)
    driveway, backyard = settings.streams
    masks = {zone.name: zone for zone in driveway.options.ignore_zones}
    assert masks["camera-mask-1"].classes == () and masks["camera-mask-1"].units is Units.FRACTION
    assert masks["camera-mask-1"].points == ((0.7812, 0.0), (1.0, 0.0), (1.0, 0.1389), (0.7812, 0.1389))
    assert masks["car-mask-1"].classes == ("car",)
    [porch] = driveway.options.zones
    assert porch.points == ((0.5, 1.0), (0.5, 0.5), (1.0, 0.5), (1.0, 1.0)) and porch.units is Units.FRACTION
    assert porch.classes == ("person",) and porch.loiter_s == 10
    assert "camera driveway: zone porch counts bicycle, which it does not track" in notes
    lawn, shed = backyard.options.zones
    assert lawn.units is Units.FRACTION and lawn.points[0] == (0.1, 0.5)
    assert shed.units is Units.PX, "no detect size: Frigate detected at the stream's own, which segcast reads"
    assert shed.points == ((10, 20), (110, 20), (110, 90))
    assert any("motion masks" in note for note in notes)


def test_a_config_without_cameras_is_refused() -> None:
    with pytest.raises(FrigateConfigError, match=r"^config\.yml: no cameras: table"):
        convert({"mqtt": {"host": "x"}})


def test_the_command_writes_a_file_segcast_starts_with_and_says_what_it_left_out(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    frigate, out = tmp_path / "config.yml", tmp_path / "segcast.toml"
    frigate.write_text(FRIGATE)
    exited = run_cli(capfd, "import-frigate", str(frigate), "--out", str(out))
    assert exited.code == 0, exited.err
    assert "segcast: note: camera driveway: motion masks" in exited.err
    assert exited.err.rstrip().endswith(f"start it with  segcast serve --config {out}")
    assert out.stat().st_mode & 0o777 == 0o600, "it holds the cameras' passwords"
    assert [s.stream_id for s in load_config(out).streams] == ["driveway", "backyard"]
    assert out.read_text().startswith("# segcast config converted from Frigate's config.yml")
    again = run_cli(capfd, "import-frigate", str(frigate), "--out", str(out))
    assert again.code == EXIT_STARTUP_ERROR
    assert again.err.strip() == f"segcast: --out {out}: exists; give --force to replace it"
    frigate.write_text("cameras: [unclosed\n")
    broken = run_cli(capfd, "import-frigate", str(frigate))
    assert broken.code == EXIT_STARTUP_ERROR and broken.err.startswith(f"segcast: {frigate}: not valid YAML (")


def test_a_restream_go2rtc_does_not_name_the_camera_of_is_kept_and_said() -> None:
    """A go2rtc source that is no RTSP URL (ONVIF's, a device's): segcast can read the restream only while
    Frigate's go2rtc runs, so the note asks for the camera's own URL."""
    frigate = {
        "go2rtc": {"streams": {"gate": ["onvif://admin:pw@10.0.0.5"]}},
        "cameras": {"gate": {"ffmpeg": {"inputs": [{"path": "rtsp://127.0.0.1:8554/gate", "roles": ["detect"]}]}}},
    }
    conversion = convert(frigate)
    assert 'uri = "rtsp://127.0.0.1:8554/gate"' in conversion.text
    assert "camera gate: its input is Frigate's go2rtc restream; point it at the camera" in conversion.notes


def test_what_frigate_takes_in_other_forms_is_read_as_frigate_reads_it() -> None:
    """A zone's objects as one string, an area as a whole number (pixels), a restream on localhost behind
    go2rtc's ffmpeg: with its own # parameters, Frigate's default 5 fps, a camera whose detection is off, a
    point a pixel beyond the edge, and a zone that crosses itself: left out with a note, not the import."""
    frigate = {
        "go2rtc": {"streams": {"door": ["ffmpeg:rtsp://10.0.0.5/main#backchannel=0#video=h264"]}},
        "cameras": {
            "door": {
                "ffmpeg": {"inputs": [{"path": "rtsp://localhost:8554/door", "roles": ["detect"]}]},
                "detect": {"width": 1000, "height": 500},
                "objects": {"track": "person", "filters": {"person": {"min_area": 1}}},
                "zones": {
                    "Front Walk": {"coordinates": "0,250,1001,250,1001,500,0,500", "objects": "person"},
                    "bowtie": {"coordinates": "100,100,600,400,600,100,100,400"},
                },
            },
            "shed": {
                "detect": {"enabled": False},
                "ffmpeg": {"inputs": [{"path": "rtsp://10.0.0.6/main", "roles": ["record"]}]},
            },
        },
    }
    conversion = convert(frigate)
    assert 'uri = "rtsp://10.0.0.5/main"' in conversion.text
    assert "process_fps = 5" in conversion.text, "Frigate's default rate, not every frame"
    assert 'classes = ["person"]' in conversion.text
    assert "person = { min_area = 2e-06 }" in conversion.text, "1 px of 1000x500, not the whole picture"
    zone = '{ name = "Front_Walk", points = [[0.0, 0.5], [1.0, 0.5], [1.0, 1.0], [0.0, 1.0]], units = "fraction", '
    assert zone + 'classes = ["person"] }' in conversion.text
    assert 'name = "bowtie"' not in conversion.text
    assert any(note.startswith("camera door: zone bowtie left out: ") for note in conversion.notes), conversion.notes
    assert "camera shed: disabled in Frigate, or its detection is: left out" in conversion.notes


def test_an_input_segcast_would_refuse_stops_the_import_naming_the_camera(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The file is read back as serve reads it, the sources' options too: serve would not start with it."""
    frigate = tmp_path / "config.yml"
    frigate.write_text("cameras:\n  bell:\n    ffmpeg:\n      inputs:\n        - path: rtsp://10.0.0.4/s#talk=1\n")
    exited = run_cli(capfd, "import-frigate", str(frigate))
    assert exited.code == EXIT_STARTUP_ERROR
    assert exited.err.startswith("segcast: config.yml: cameras.bell: its input: "), exited.err
    assert "talk" in exited.err


def test_a_config_frigate_would_not_read_either_is_one_line_not_a_traceback(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    frigate = tmp_path / "config.yml"
    frigate.write_text(
        "cameras:\n  yard:\n    ffmpeg: {inputs: [{path: rtsp://x/s}]}\n    zones:\n      a: {coordinates: 0.1;0.2}\n"
    )
    exited = run_cli(capfd, "import-frigate", str(frigate))
    assert exited.code == EXIT_STARTUP_ERROR
    assert exited.err.startswith("segcast: config.yml: cameras.yard: not read as a Frigate camera ("), exited.err
    assert "Traceback" not in exited.err


def test_a_broker_frigate_reached_over_tls_is_reached_over_tls() -> None:
    frigate = {
        "detectors": {"coral": {"type": "edgetpu"}},
        "mqtt": {"host": "broker.lan", "port": 8883, "tls_ca_certs": "/config/ca.pem"},
        "cameras": {"gate": {"ffmpeg": {"inputs": [{"path": "rtsp://10.0.0.5/live"}]}}},
    }
    conversion = convert(frigate)
    assert 'port = 8883\ntls = true\nca_file = "/config/ca.pem"\n' in conversion.text
    assert any(note.startswith("detectors and model: segcast runs its own model") for note in conversion.notes)
