"""Offline evaluation: replay recorded episodes through backends (replay.py) and draw the result (plots.py)."""
