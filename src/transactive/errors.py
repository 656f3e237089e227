"""Exceptions raised by the package. Every input error is a ``ValueError`` subclass."""


def plain(x: object) -> object:
    """A numpy scalar as the plain Python value, so messages read ``'h1'``, not
    ``np.str_('h1')``."""
    item = getattr(x, "item", None)
    return item() if callable(item) else x


class TransactiveError(Exception):
    """Base class of every error raised by transactive."""


class InvalidInputError(TransactiveError, ValueError):
    """Input that cannot be used as given; the message names the culprit."""


class InvalidCurveError(InvalidInputError):
    """A bid curve that is not a valid non-increasing price–quantity curve.

    ``index`` is the position of the offending curve when one curve is to blame.
    """

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


class InvalidBidError(InvalidInputError):
    """A bid that cannot enter the market; the message names the bid id."""


class BalanceError(TransactiveError):
    """Energy or money does not balance: an internal invariant was broken."""


class UnknownFeederError(InvalidInputError):
    """A feeder name that is not in the registry; the message lists the available ones."""


class NetworkTopologyError(InvalidInputError):
    """A network whose topology an algorithm cannot use (meshed, disconnected, unknown bus)."""


class UnsupportedComponentError(InvalidInputError):
    """A network component (or component setting) the grid converter cannot model faithfully."""


class PowerFlowError(TransactiveError):
    """An AC power flow that did not converge or could not be set up."""


class NetworkClearingError(TransactiveError):
    """The network-constrained clearing LP could not be solved (solver failure or a problem
    that stays infeasible even with load shedding); the message says why."""
