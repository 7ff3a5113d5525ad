"""Test package (a regular package, so `tests.*` never resolves to a `tests` package some dependency installs)."""
