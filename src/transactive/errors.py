"""Exceptions raised by the package. Every input error is a ``ValueError`` subclass."""


class TransactiveError(Exception):
    """Base class of every error raised by transactive."""


class InvalidInputError(TransactiveError, ValueError):
    """Input that cannot be used as given; the message names the culprit."""


class InvalidCurveError(InvalidInputError):
    """A bid curve that is not a valid non-increasing price–quantity curve."""


class InvalidBidError(InvalidInputError):
    """A bid that cannot enter the market; the message names the bid id."""


class BalanceError(TransactiveError):
    """Energy or money does not balance: an internal invariant was broken."""
