"""Finite-difference pricers of Asian, lookback and cliquet options (see finite_difference.py)."""

PRICERS = {}
