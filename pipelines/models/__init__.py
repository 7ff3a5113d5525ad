"""Trained models as the jobs find them: training checkpoints (:mod:`.checkpoint`), the MLflow
pyfunc they are logged as (:mod:`.pyfunc`), and :mod:`.source`, which loads either for a job."""
