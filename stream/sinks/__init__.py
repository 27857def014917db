"""Where events go: the log, the recent events, the evidence store, and signed webhooks
through a durable outbox. Sinks never import the HTTP layer."""
