"""The model: a shared transformer encoder (:mod:`.encoders`) with one head per task (:mod:`.heads`),
put together by :class:`~.multitask.MultiTaskModel`."""

from .multitask import MultiTaskModel

__all__ = ["MultiTaskModel"]
