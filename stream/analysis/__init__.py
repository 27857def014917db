"""The analysis: the pipeline's streams, sampling, face stage, batched inference, votes
and decisions. It imports sources, and never sinks or the HTTP layer: what receives its
events is handed to it (:class:`~fakewatch.stream.analysis.events.EventSink`)."""
