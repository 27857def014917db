"""The ``fakewatch`` command line."""
