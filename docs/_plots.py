"""Entry points of the results page's ``plot`` directives (``.. plot:: _plots.py ifp_speed``).

Matplotlib's plot directive runs this file's code and then calls the named function; the
figures themselves are drawn by :mod:`_figures`.
"""

from _figures import bank_query, checkpoint_knn, ifp_speed  # noqa: F401
