"""``deepsets init``: a new table to a working feature schema and run config in one command.

:mod:`.profile` reads the table once in batches; :mod:`.rules` and :mod:`.leaks` choose each
column's kind, the id column, the left-out columns and the task; :mod:`.writing` writes the two
TOML files with every choice explained; :mod:`.job` ties them together (:func:`run_init`).
"""
