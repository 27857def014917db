"""The HTTP layer: the API's routes and handlers, the stream view and the web pages.
Only a host (:mod:`fakewatch.stream.host`, the cluster's front) builds it."""
