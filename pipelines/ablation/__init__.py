"""``deepsets ablate``: the job as named steps (:mod:`.job`), the methods over cached modality
vectors (:mod:`.methods`), retraining without each modality (:mod:`.retrain`), and the table,
chart and MLflow artifacts (:mod:`.report`)."""
