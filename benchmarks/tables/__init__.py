"""Real tables with list columns: deepsets with ``deepsets init`` and defaults against the
gradient-boosting peers a user would pick (LightGBM, CatBoost, HistGradientBoosting), in one
command: ``python -m benchmarks.tables`` (see :mod:`benchmarks.tables.__main__`)."""
