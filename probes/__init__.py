"""Collectors: process tree, NVML, engine metrics, the in-process agent. No UI code."""
