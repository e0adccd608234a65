"""Source selection by training: bandits that pick a target's sources from its validation gains.

:mod:`.thompson` is the sampler (maths only); :mod:`.bandit` runs it with the joint trainer
(AutoSeM stage 1), the baseline that affinity-based source rankings are compared with.
"""
