"""A source URI's certificate options have one reader (`certificate_options`): the network source that
checks a camera's certificate and `unmask_uri`, which gives a secret back only to a URI checked as
strictly, read them alike, so they cannot disagree about whether a camera's certificate is checked."""

from __future__ import annotations

import pytest

from server.sources.network import NetworkSource
from server.sources.uri import certificate_options

CA_FILE = "/etc/segcast/ca.pem"

#: Each with whether its certificate is checked, and against which CA file ("" for the system's, or none).
URIS = {
    "https://cam.example/video.mjpg": (False, ""),
    "https://cam.example/video.mjpg#tls_verify=0": (False, ""),
    "https://cam.example/video.mjpg#tls_verify=": (False, ""),
    "https://cam.example/video.mjpg#tls_verify=1": (True, ""),
    f"https://cam.example/video.mjpg#ca_file={CA_FILE}": (True, CA_FILE),
    f"rtsps://cam.example/live#tls_verify=1&ca_file={CA_FILE}&timeout=5": (True, CA_FILE),
    "rtsps://cam.example/live#tls_verify=0&tls_verify=1": (True, ""),  # the last one given counts
    "rtsps://cam.example/live#tls_verify=1&tls_verify=0": (False, ""),
    f"rtsps://cam.example/live#ca_file={CA_FILE}&ca_file=": (False, ""),
    "rtsps://cam.example/live?tls_verify=1": (False, ""),  # the camera's own query, not segcast's option
}


@pytest.mark.parametrize(("uri", "expected"), URIS.items())
def test_a_uris_certificate_options_say_whether_and_against_what_it_is_checked(
    uri: str, expected: tuple[bool, str]
) -> None:
    given = certificate_options(uri)
    assert (given.checked, given.ca_file) == expected


@pytest.mark.parametrize("uri", URIS)
def test_the_network_source_checks_the_certificate_where_the_shared_reader_says_so(uri: str) -> None:
    given = certificate_options(uri)
    av_options = NetworkSource(uri).av_options()
    assert ("tls_verify" in av_options) is given.checked
    if given.ca_file:
        assert av_options["ca_file"] == given.ca_file


def test_options_no_source_kind_knows_are_read_past() -> None:
    """`unmask_uri` reads any URI sent back, where `split_options` would refuse an option it does not know."""
    assert certificate_options(f"rtsps://cam.example/live#no_such_option=2&ca_file={CA_FILE}").checked
