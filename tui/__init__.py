"""The live Textual dashboard (draws snapshots; never collects them)."""
