"""Tracker runs and their outputs: workspace, track, dashboard, tickets, notify, serve, PR report. Imports every layer below it."""
