"""WebRTC with aiortc: a browser's camera as a stream (publish), and any stream as low-latency video (play).

`setup_webrtc` is the one entry point the app calls; see `routes` for the endpoints.
"""

from server.webrtc.config import IceServer, IceServerError, WebRTCConfig
from server.webrtc.routes import setup_webrtc

__all__ = ["IceServer", "IceServerError", "WebRTCConfig", "setup_webrtc"]
