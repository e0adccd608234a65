"""Figures and reports: functions take DataFrames and return matplotlib Figures."""
