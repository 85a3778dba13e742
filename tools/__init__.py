"""Launcher code shared by ``tasks.py`` (invoke) and the end-to-end tests."""
