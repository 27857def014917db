"""The streaming service: sources -> faces -> batches -> votes -> sinks.

``sources`` (FFmpeg, WebRTC, frames) <- ``analysis`` (the pipeline) <- ``host`` ->
``sinks`` (events, evidence, webhooks), ``http`` (the API and pages). Imports engines,
never training.
"""
