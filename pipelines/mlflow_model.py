"""Where models logged before the pipelines were grouped by job import their pyfunc from.

Every logged deepsets model carries a three-line ``python_model`` file that imports
``DeepsetsPyfunc``; models logged by earlier versions name this module, so it stays as an alias
of :mod:`pipelines.models.pyfunc` (new models name that module directly).
"""

from pipelines.models.pyfunc import DeepsetsPyfunc

__all__ = ["DeepsetsPyfunc"]
