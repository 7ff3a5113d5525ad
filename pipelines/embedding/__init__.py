"""``deepsets embed``: the job on Ray Data (:mod:`.job`), what each actor does with a fragment
(:mod:`.worker`), and the output folder: its manifest, resume and the final accounting
(:mod:`.output`)."""
