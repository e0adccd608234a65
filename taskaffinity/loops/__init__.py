"""Affinities in loops the toolkit does not run: :class:`~.meter.AffinityMeter` in a plain PyTorch
loop, and its fronts for PyTorch Lightning (:mod:`.lightning`, ``AffinityCallback``) and the Hugging
Face Trainer (:mod:`.hf_trainer`, ``AffinityTrainer``). Also importable as ``taskaffinity.meter``,
``taskaffinity.lightning`` and ``taskaffinity.hf_trainer``."""
