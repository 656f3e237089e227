"""Settlement: money from records, in one place (DESIGN.md §4–5)."""

from transactive.settlement.settle import Rules, dso_revenue, participant_totals, settle

__all__ = ["Rules", "dso_revenue", "participant_totals", "settle"]
