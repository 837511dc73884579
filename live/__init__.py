"""The one derivation layer: snapshots in, the single object every view renders out.

Arrows: cli → views (tui, headless text and JSON, recordings, exporter) → live → probes → model.
"""
