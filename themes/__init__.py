"""Colour themes for the dashboard."""
