"""Aggregation over run directories: tables with intervals and figures. Reads files, never training state."""
