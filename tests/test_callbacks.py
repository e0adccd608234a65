"""The callback contract: hooks in order with the TrainingContext, the step in progress, and
evaluations that a callback asks for and the trainer runs."""

from conftest import tiny_config

from taskaffinity.training.callbacks import Callback, CallbackList, StepContext, TrainingContext
from taskaffinity.training.joint import train_joint_model


class Log(Callback):
    def __init__(self, evaluate_after=()):
        self.evaluate_after = set(evaluate_after)
        self.calls, self.evaluated, self.contexts = [], [], set()

    def wants_evaluation(self, step):
        return step in self.evaluate_after

    def on_train_begin(self, context):
        self.calls.append(("train_begin",))
        self.contexts.add(id(context))

    def on_step_begin(self, context, step, batches):
        info = context.step_context
        assert isinstance(info, StepContext) and info.step == step and set(batches) <= set(info.counts)
        self.calls.append(("begin", step, info.phase, sum(info.counts.values())))
        self.contexts.add(id(context))

    def on_after_optimizer_step(self, context, step, losses):
        self.calls.append(("after", step))

    def on_evaluate(self, context, step, metrics):
        assert (metrics["step"] == step).all()
        self.evaluated.append(step)

    def on_train_end(self, context):
        self.calls.append(("train_end",))


def test_hooks_get_one_context_and_the_step_in_progress():
    config = tiny_config(["trec6", "sms_spam"], steps=3, head_warmup_steps=1, eval_every=100)
    log = Log()
    result = train_joint_model(config, callbacks=[log], progress=False)
    assert isinstance(result.trainer.context, TrainingContext) and log.contexts == {id(result.trainer.context)}
    batch = config.training.batch_size
    assert log.calls == [
        ("train_begin",),
        ("begin", 1, "head_warmup", batch),
        ("after", 1),
        ("begin", 2, "joint", batch),
        ("after", 2),
        ("begin", 3, "joint", batch),
        ("after", 3),
        ("begin", 4, "joint", batch),
        ("after", 4),
        ("train_end",),
    ]
    assert log.evaluated == [1, 4]  # after the head warm-up and at the end (eval_every is 100)


def test_the_trainer_evaluates_when_a_callback_asks():
    config = tiny_config(["trec6", "sms_spam"], steps=4, eval_every=100)
    asking, listening = Log(evaluate_after={0, 2}), Log()
    result = train_joint_model(config, callbacks=[asking, listening], progress=False)
    assert asking.evaluated == listening.evaluated == [0, 2, 4]  # 0: before the first step
    assert sorted(result.trainer.eval_log["step"].unique()) == [0, 2, 4]
    assert CallbackList([asking, listening]).wants_evaluation(2) and not CallbackList([listening]).wants_evaluation(2)
