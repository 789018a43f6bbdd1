"""Turning Tune sweep results into tables, Pareto fronts, comparisons, plots and a report."""
