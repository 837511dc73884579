"""Headless views: the ``--once`` report and JSON, recordings, the exporter, calc's tables.

They only render what :mod:`infermon.live` derived; the dashboard (:mod:`infermon.tui`) is the other view.
"""
