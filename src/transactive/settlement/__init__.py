"""Settlement: money from records, in one place (DESIGN.md §4–5)."""

from transactive.settlement.settle import Rules, participant_totals, settle

__all__ = ["Rules", "participant_totals", "settle"]
