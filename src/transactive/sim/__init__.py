"""Scenario simulation: scenario files, the time-stepped runner, KPIs and reports."""
