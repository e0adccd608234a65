"""Affinities in loops the toolkit does not run: :class:`~.meter.AffinityMeter` in a plain PyTorch
loop, and its fronts for PyTorch Lightning (:mod:`.lightning`, ``AffinityCallback``) and the Hugging
Face Trainer (:mod:`.hf_trainer`, ``AffinityTrainer``). ``taskaffinity.meter``, ``taskaffinity.lightning``
and ``taskaffinity.hf_trainer`` import the same modules (short names)."""


def __getattr__(name):  # the optional fronts import Lightning / accelerate: only on use
    if name == "AffinityMeter":
        from .meter import AffinityMeter

        return AffinityMeter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["AffinityMeter"]
