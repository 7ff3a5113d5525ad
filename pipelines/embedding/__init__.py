"""``deepsets embed``: the job on Ray Data (:mod:`.job`), what each actor does with a fragment
(:mod:`.worker`, its process set-up in :mod:`.process_tuning`), one fragment's output files
(:mod:`.writer`, each written whole by :mod:`.parts`), the output folder's names
(:mod:`.layout`), and the folder's lock, manifest, resume and final accounting (:mod:`.output`)."""
