"""taskaffinity: which tasks should be trained together?

One joint multi-task run records inter-task affinities (TAG lookahead, first-order
and gradient estimators); grouping turns them into task groups. Entry points:
:mod:`taskaffinity.api` (``train_study``), :mod:`taskaffinity.affinity.run`
(``record_affinity``), :mod:`taskaffinity.grouping`, and the ``taskaffinity`` CLI.
"""

__version__ = "0.1.0"
