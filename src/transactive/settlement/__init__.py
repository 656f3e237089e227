"""Settlement: money from records, in one place (DESIGN.md §4–5). Amounts are integer minor
units (cents)."""

from transactive.settlement.flex import flex_lines
from transactive.settlement.invoices import Invoice, invoice, write_invoices
from transactive.settlement.levies import Levy, levy_lines, vat_lines
from transactive.settlement.network_tariff import (
    DEMAND,
    FIXED,
    RATE_DESIGNS,
    VOLUMETRIC,
    RateDesign,
    dso_net_receipts,
    network_lines,
    revenue_requirement,
)
from transactive.settlement.settle import check_balance, energy_lines, settle
from transactive.settlement.totals import (
    MINOR,
    format_minor,
    largest_remainder,
    participant_totals,
    period_of,
    to_currency,
)
from transactive.settlement.value import day_ahead_price, stored_change, value_table

__all__ = [
    "DEMAND",
    "FIXED",
    "MINOR",
    "RATE_DESIGNS",
    "VOLUMETRIC",
    "Invoice",
    "Levy",
    "RateDesign",
    "check_balance",
    "day_ahead_price",
    "dso_net_receipts",
    "energy_lines",
    "flex_lines",
    "format_minor",
    "invoice",
    "largest_remainder",
    "levy_lines",
    "network_lines",
    "participant_totals",
    "period_of",
    "revenue_requirement",
    "settle",
    "stored_change",
    "to_currency",
    "value_table",
    "vat_lines",
    "write_invoices",
]
