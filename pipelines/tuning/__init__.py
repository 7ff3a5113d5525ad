"""``deepsets tune``: hyperparameter search on Ray Tune with ASHA early stopping; the search
space (:mod:`.space`) and the job (:mod:`.job`)."""
