"""What ``last_error`` and the log say of a failed MQTT connection: the broker's address, the error, and the fix
where the symptoms point at one (plain MQTT sent to a TLS port or the other way round, a login refused, a
certificate this machine cannot verify without ``ca_file``, a broker that stopped answering).

Kept apart from the connection task (`server.events.mqtt.connection`), which only decides when to connect: the
wording is the part that grows with every broker's way of failing, and is read by a person fixing a config file.
"""

from __future__ import annotations

import ssl

from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.reasoncodes import ReasonCode

from server.events.config import MqttSettings

#: What aiomqtt's error says when the broker's answer did not come within the client's timeout.
AIOMQTT_TIMED_OUT = "Operation timed out"
#: What aiomqtt's error says when the connection is lost under its message iterator
#: (`server.events.mqtt.connection.MqttSink._watch`).
AIOMQTT_LOST = "Disconnected during message iteration"
#: What ``last_error`` and the log say of a lost connection, instead of the words of the library's code
#: that noticed it (the reason paho gives with them is always "Unspecified error").
CONNECTION_CLOSED = "closed the connection, or the network lost it"
#: The ports plain MQTT and MQTT over TLS are registered on.
MQTT_PORT = 1883
MQTT_TLS_PORT = 8883
#: CONNACK's refusals of the login: MQTT 3.1.1's "bad user name or password" and "not authorized",
#: and MQTT 5's codes for them, which paho reports for both.
LOGIN_REFUSED = frozenset({4, 5, 134, 135})
#: OpenSSL's verify codes of a certificate whose issuer this machine does not trust (a self-signed broker,
#: or one signed by a private CA): the cure is ``ca_file``. A name mismatch (62) is not one of them.
UNTRUSTED_ISSUER = frozenset({18, 19, 20, 21})


def connection_error(
    settings: MqttSettings, exc: BaseException, *, connected: bool, answered: bool, timeout_s: float
) -> str:
    """The failure of a connection, for ``last_error`` and the log: the broker's address, the error,
    and a hint where the symptoms are those of plain MQTT sent to a TLS port, or the other way round,
    or of a certificate this machine cannot verify without ``ca_file``.

    ``connected``: whether this connection got its CONNACK; ``answered``: whether any connection with these
    settings did, so the port is known right (a broker stalled since says the same as a TLS port);
    ``timeout_s``: the client's timeout for an answer.

    A TLS listener takes the TCP connection and then drops plain MQTT's CONNECT, or waits for a
    TLS hello that never comes: either way no CONNACK arrives and the client times out. That
    alone does not prove a TLS port (a broker too busy to answer looks the same), so the hint is
    a question; on the TLS port itself any failure of plain MQTT gets it.
    """
    where = f"broker {settings.host}:{settings.effective_port}"
    if isinstance(exc, MqttConnectError) and reason_number(exc.rc) in LOGIN_REFUSED:
        check = "username and password" if settings.username is not None else "a username and password (none set)"
        return f"{where} refused the login (check {check} in [events.mqtt], and the broker's ACL): {exc}"
    if str(exc) in (AIOMQTT_LOST, CONNECTION_CLOSED):
        return f"{where} {CONNECTION_CLOSED}"
    if settings.tls and _untrusted_issuer(exc):
        ca = "set ca_file" if settings.ca_file is None else f"ca_file ({settings.ca_file}) did not sign it: set it"
        return f"{where}: {exc} ({ca} in [events.mqtt] to the broker's CA, or its self-signed certificate)"
    silent = not connected and str(exc) == AIOMQTT_TIMED_OUT
    unanswered = f"connected, but no MQTT answer within {timeout_s:g} s"
    if silent and answered:
        return f"{where}: {unanswered} (as it answered before: is it stalled or overloaded?)"
    if connected or answered:
        return f"{where}: {exc}"
    if settings.tls and _handshake_dropped(exc):
        return (
            f"{where}: {exc} (does the broker speak MQTT over TLS on this port? Plain MQTT's is usually "
            f"{MQTT_PORT}: set tls = false there, or the broker's TLS port, usually {MQTT_TLS_PORT})"
        )
    if settings.tls:
        return f"{where}: {exc}"
    if silent:
        return f"{where}: {unanswered} (is it a TLS port? set tls = true)"
    if settings.effective_port == MQTT_TLS_PORT:
        return f"{where}: {exc} (port {MQTT_TLS_PORT} is MQTT over TLS: set tls = true)"
    return f"{where}: {exc}"


def reason_number(rc: int | ReasonCode | None) -> int | None:
    """The number of an aiomqtt error's reason code, which paho gives as a number or a `ReasonCode`."""
    return rc.value if isinstance(rc, ReasonCode) else rc


def _handshake_dropped(exc: BaseException) -> bool:
    """Whether a TLS connection failed as one to a port that does not speak TLS does: the peer reset it,
    ended it, or answered with what is not TLS.

    A plain MQTT listener reads the TLS hello as a malformed packet and resets the connection; aiomqtt
    raises its own error with the socket's as its context. A certificate that failed verification is
    a TLS port's answer, whose cure is its CA (``ca_file``), never plain MQTT.
    """
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ConnectionResetError | ssl.SSLEOFError):
            return True
        if isinstance(cause, ssl.SSLError) and cause.reason == "WRONG_VERSION_NUMBER":
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _untrusted_issuer(exc: BaseException) -> bool:
    """Whether a TLS connection failed as the broker's certificate was signed by no CA this machine trusts
    (aiomqtt raises its own error, with the certificate's as its context)."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError) and cause.verify_code in UNTRUSTED_ISSUER:
            return True
        cause = cause.__cause__ or cause.__context__
    return False
