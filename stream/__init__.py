"""The streaming service: sources -> faces -> batches -> votes -> alerts.

Imports engines, never training.
"""
