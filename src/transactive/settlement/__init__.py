"""Settlement: money from records, in one place (DESIGN.md §4–5)."""

from transactive.settlement.network_tariff import (
    dso_net_receipts,
    network_lines,
    revenue_requirement,
)
from transactive.settlement.settle import check_balance, energy_lines, settle
from transactive.settlement.totals import participant_totals
from transactive.settlement.value import day_ahead_price, stored_change, value_table

__all__ = [
    "check_balance",
    "day_ahead_price",
    "dso_net_receipts",
    "energy_lines",
    "network_lines",
    "participant_totals",
    "revenue_requirement",
    "settle",
    "stored_change",
    "value_table",
]
