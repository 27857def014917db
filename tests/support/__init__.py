"""What the tests share: real peers (an RTSP server, webhook receivers, a WebRTC
publisher, Redis), media made on the fly, the demo clips, one reader of Prometheus
metrics, the service as a test runs it, and load scenarios.

Only the tests import this package; the product never does.
"""
