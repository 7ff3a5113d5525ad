"""Tests of the `deepsets` package."""
