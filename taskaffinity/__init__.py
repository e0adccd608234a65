"""taskaffinity: which tasks should be trained together?

One joint multi-task run records inter-task affinities (TAG lookahead, first-order
and gradient estimators); grouping turns them into task groups. Entry points:
:class:`AffinityMeter` (affinities in your own training loop), :mod:`taskaffinity.api`
(``train_joint_model``, ``record_affinity``, ``run_study``, ``build_report``),
:mod:`taskaffinity.training.callbacks` (the contract a recorder is written against),
:mod:`taskaffinity.grouping`, and the ``taskaffinity`` CLI.
"""

from . import _aliases

__version__ = "0.1.0"
_aliases.install()  # taskaffinity.train and other earlier paths, and the fronts' short names (taskaffinity.lightning)


def __getattr__(name):  # imported on first use: `import taskaffinity` stays light
    if name == "AffinityMeter":
        from .loops.meter import AffinityMeter

        return AffinityMeter
    raise AttributeError(f"module 'taskaffinity' has no attribute '{name}'")


__all__ = ["AffinityMeter", "__version__"]
