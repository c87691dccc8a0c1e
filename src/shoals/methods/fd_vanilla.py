"""Finite-difference pricers of European, American and barrier options (see finite_difference.py)."""

PRICERS = {}
