"""What ``deepsets tune`` prints while it searches: one line per trial epoch and per finished trial.

Ray Tune pickles its run config, callbacks included, into the experiment folder when the search
is set up. The callback therefore holds only plain values and looks ``print`` up when it prints:
a ``print`` captured earlier stops being picklable as soon as Ray replaces ``builtins.print``
(its driver does, on the first line a worker sends it).
"""

from __future__ import annotations


def trial_progress(metric: str, show: bool):
    """A Tune callback printing each trial's epochs and ends (nothing when ``show`` is False).

    Args:
        metric: the result key shown for each epoch (the selected validation metric).
        show: print at all (``--json`` runs print only their summary).
    """
    from ray import tune

    class TrialProgress(tune.Callback):
        def __init__(self) -> None:
            self.metric, self.show, self.ended = metric, show, 0

        def _say(self, line: str) -> None:
            if self.show:
                print(line, flush=True)

        def on_trial_result(self, iteration, trials, trial, result, **info):
            value = result.get(self.metric)
            shown = f": {self.metric} {value:.4g}" if isinstance(value, (int, float)) else ""
            self._say(f"  {trial.trial_id} epoch {result.get('training_iteration')}{shown}")

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.ended += 1  # Tune marks the trial TERMINATED only after this call
            self._say(f"  {trial.trial_id} done ({self.ended} trial(s) ended so far)")

    return TrialProgress()
