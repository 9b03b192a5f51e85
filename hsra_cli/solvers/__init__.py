"""Iterative solvers that need no weights."""
