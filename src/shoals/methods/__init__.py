"""L1 numerical methods: each says what it ``supports()`` and returns a :class:`PriceResult` from ``price()``."""

from shoals.methods.chebyshev import (
    Chebyshev,
    ChebyshevProxy,
    ChebyshevTT,
    PiecewiseChebyshevProxy,
)
from shoals.methods.closed_form import ClosedForm
from shoals.methods.finite_difference import FiniteDifference
from shoals.methods.monte_carlo import MonteCarlo, stream_of

__all__ = ["Chebyshev", "ChebyshevProxy", "ChebyshevTT", "ClosedForm", "FiniteDifference", "MonteCarlo", "PiecewiseChebyshevProxy",
           "price", "stream_of"]


def price(instrument, market, method=None, **options):
    """Price ``instrument`` (one contract or a batch) in ``market`` with ``method`` (default closed form)."""
    method = ClosedForm() if method is None else method
    return method.price(instrument, market, **options)
