"""transactive: a layered transactive energy platform.

Packages follow the data flow: devices (``der``) → curves (``core``) → nodes (``nodes``)
→ markets (``market``) → physics checks (``grid``) → settlement (``settlement``);
``sim`` runs scenarios and ``service`` exposes the market over HTTP.
"""

from transactive.errors import BalanceError, InvalidBidError, InvalidCurveError, TransactiveError

__version__ = "0.1.0"

__all__ = [
    "BalanceError",
    "InvalidBidError",
    "InvalidCurveError",
    "TransactiveError",
    "__version__",
]
