"""L2 risk: book pricing and aggregation, portfolio VaR/CVaR, delta-hedged P&L."""

from shoals.risk.book import OUTPUT_COLUMNS, Auto, price_book
from shoals.risk.hedging import HedgeSimResult, hedged_pnl
from shoals.risk.var import Portfolio, VarResult, historical_var, value_at_risk

__all__ = ["OUTPUT_COLUMNS", "Auto", "HedgeSimResult", "Portfolio", "VarResult", "hedged_pnl", "historical_var",
           "price_book", "value_at_risk"]
