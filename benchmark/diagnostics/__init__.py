"""Checks of the harness itself: its performance tables (perf.py) and the GPU check."""
