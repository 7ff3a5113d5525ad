"""``deepsets train``: the recipe (:mod:`.run`), the checks on the data before Ray starts
(:mod:`.inputs`), what every Ray Train worker runs (:mod:`.loop`), and per task kind the loss
and validation metrics (:mod:`.objectives`, :mod:`.metrics`, :mod:`.ranking_metrics`)."""
