"""Prefect flows composing the steps of :mod:`tasks`, and the ``pbrf`` command line."""
