"""Command-line front end: argument parsing and the headless views."""
