"""What the tests share: real peers (the RTSP camera's skip-or-fail rule, webhook
receivers, a WebRTC publisher, Redis), media made on the fly, the demo clips, one reader
of Prometheus metrics, the service as a test runs it, load scenarios, and the benchmark
scripts run as programs.

Only the tests import this package; neither the product nor a benchmark ever does.
"""
