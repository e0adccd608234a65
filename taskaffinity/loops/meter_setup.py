"""What ``AffinityMeter`` checks when it is made: every refusal that can be known before the first step.

Each check raises :class:`~taskaffinity.errors.TaskAffinityError` naming the argument and
the fix. The rest of this module finds, at a step, what a plain backward would reach
(:func:`graph_leaves`) and the θ_s the meter measures (:func:`shared_parameters`).
"""

from __future__ import annotations

import contextlib
import logging
import math

import torch
from torch import nn

from ..affinity.updates import rule_support
from ..affinity.windows import FEATURE, STREAMED
from ..errors import TaskAffinityError

log = logging.getLogger("taskaffinity.loops.meter")

LOW_PRECISION = (torch.float16, torch.bfloat16)


def check_tasks(tasks) -> list[str]:
    tasks = [tasks] if isinstance(tasks, str) else list(tasks)
    if len(tasks) < 2:
        raise TaskAffinityError(f"AffinityMeter: tasks must name at least two tasks, got {tasks}")
    if any(not isinstance(t, str) or not t for t in tasks):
        raise TaskAffinityError(f"AffinityMeter: task names must be non-empty strings, got {tasks}")
    dup = sorted({t for t in tasks if tasks.count(t) > 1})
    if dup:
        raise TaskAffinityError(f"AffinityMeter: duplicate task name(s): {', '.join(dup)}")
    return tasks


def shared_parameters(
    model: nn.Module, shared
) -> tuple[list[tuple[str, nn.Parameter]], list[tuple[str, nn.Parameter]]]:
    """θ_s as (name in ``model``, parameter) pairs in ``model``'s order, and the frozen ones left out.

    A frozen parameter (``requires_grad=False``) is moved by no task's update, so it is not
    part of θ_s: when ``shared`` holds trainable and frozen parameters, θ_s is the trainable
    ones. When all are frozen (a head warm-up with the trunk frozen), θ_s is all of them and
    they must be trainable by the first recorded step.
    """
    if not isinstance(model, nn.Module):
        raise TaskAffinityError(f"AffinityMeter: model must be a torch.nn.Module, got {type(model).__name__}")
    params = list(shared.parameters()) if isinstance(shared, nn.Module) else list(shared)
    if any(isinstance(p, tuple) for p in params):  # named_parameters() given
        params = [p for _, p in params]
    wanted = {id(p) for p in params}
    named = [(n, p) for n, p in model.named_parameters() if id(p) in wanted]
    if not params or len(named) != len(wanted):
        raise TaskAffinityError(
            "AffinityMeter: shared must be a module or parameters of the model, "
            f"got {len(params)} parameter(s), {len(named)} of them in the model"
        )
    trainable = [(n, p) for n, p in named if p.requires_grad]
    if not trainable or len(trainable) == len(named):
        return named, []
    frozen = [(n, p) for n, p in named if not p.requires_grad]
    log.info(
        "AffinityMeter: %d frozen shared parameter(s) (%s%s) are not part of θ_s: no task's update moves them",
        len(frozen),
        frozen[0][0],
        ", ..." if len(frozen) > 1 else "",
    )
    return trainable, frozen


def check_trainable(theta, frozen, where: str) -> None:
    """Refuse a step whose trainable part of ``shared`` is not the θ_s the meter measures."""
    still = next((n for n, p in theta if not p.requires_grad), None)
    if still is not None:
        if len(frozen) == 0 and not any(p.requires_grad for _, p in theta):
            raise TaskAffinityError(
                f"{where}: every shared parameter has requires_grad=False at a recorded step "
                "(frozen trunk?): there is no update to measure; start recording after "
                "unfreezing (start=)"
            )
        raise TaskAffinityError(
            f"{where}: shared parameter '{still}' is frozen (requires_grad=False) at a recorded "
            "step but is part of θ_s: the records would mix two sets of shared parameters. "
            "Make the meter after (un)freezing: θ_s is the trainable part of shared then"
        )
    thawed = next((n for n, p in frozen if p.requires_grad), None)
    if thawed is not None:
        raise TaskAffinityError(
            f"{where}: shared parameter '{thawed}' was frozen when the meter was made (so not "
            "part of θ_s) and is trainable now: the records would mix two sets of shared "
            "parameters. Make the meter after unfreezing"
        )


def lr_of(optimizer, theta) -> float | None:
    """The learning rate of the first θ_s parameter the optimizer holds (None: it holds none)."""
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    group = next((group_of[id(p)] for _, p in theta if id(p) in group_of), None)
    return float(group["lr"]) if group is not None else None


def check_optimizer_rule(optimizer, theta, where: str) -> None:
    """Refuse an optimizer whose step for one gradient the optimizer rule cannot form, or that lacks θ_s."""
    reason = rule_support(optimizer)
    if reason:
        raise TaskAffinityError(
            f"{where}: the optimizer rule cannot use {type(optimizer).__name__}: {reason}. "
            "Leave the optimizer rule out (estimators= without stream_first_order_optimizer and "
            "probe(rules=['sgd']); optimizer_rule=False in the Lightning and Trainer fronts), or "
            "pass lr= instead of optimizer="
        )
    held = {id(p) for g in optimizer.param_groups for p in g["params"]}
    missing = next((n for n, p in theta if id(p) not in held), None)
    if missing is not None:
        raise TaskAffinityError(
            f"{where}: shared parameter '{missing}' is not in the optimizer: the optimizer rule "
            "needs its state and settings (give the optimizer every trainable shared parameter, "
            "or leave the optimizer rule out)"
        )


def check_lr(lr: float | None, optimizer, theta) -> float:
    """η of the SGD rule: ``lr``, else the optimizer's learning rate of θ_s; a finite number > 0."""
    if lr is None and optimizer is not None:
        lr = lr_of(optimizer, theta)
    if lr is None or not lr > 0 or not math.isfinite(lr):
        raise TaskAffinityError(
            f"AffinityMeter: lr (η of the SGD rule) must be a finite number > 0, got {lr} "
            "(pass lr=, or an optimizer holding the shared parameters to take it from)"
        )
    return float(lr)


def check_estimators(estimators, optimizer, theta) -> tuple[str, ...]:
    """The streamed estimators to record (default: all four with an optimizer, the first three
    without); the optimizer rule's must be one the optimizer allows."""
    default = STREAMED if optimizer is not None else STREAMED[:3]
    chosen = tuple(default if estimators is None else estimators)
    unknown = [e for e in chosen if e not in STREAMED + FEATURE]
    if unknown or not chosen:
        raise TaskAffinityError(
            f"AffinityMeter: unknown estimator '{unknown[0] if unknown else ''}' "
            f"(choose at least one of {', '.join(STREAMED + FEATURE)})"
        )
    if "stream_first_order_optimizer" in chosen:
        if optimizer is None:
            raise TaskAffinityError("AffinityMeter: stream_first_order_optimizer needs optimizer=")
        check_optimizer_rule(optimizer, theta, "AffinityMeter")
    return chosen


def check_counts(**values) -> None:
    """``window``, ``start``, ``every``: integers >= 1; ``sketch_dim``: None or an integer >= 1."""
    sketch_dim = values.pop("sketch_dim", None)
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise TaskAffinityError(f"AffinityMeter: {key} must be an integer >= 1, got {value!r}")
    if sketch_dim is not None and (not isinstance(sketch_dim, int) or sketch_dim < 1):
        raise TaskAffinityError(f"AffinityMeter: sketch_dim must be an integer >= 1, got {sketch_dim!r}")


def check_probe(theta, frozen, optimizer, rules, *, exact: bool = True) -> None:
    """What a probe refuses before it computes anything: a θ_s that changed, half-precision θ_s for
    the exact lookahead (θ_s + Δ_i would round Δ_i away; the first-order forms are products of
    float32 gradients), an optimizer rule the optimizer does not allow."""
    check_trainable(theta, frozen, "AffinityMeter.probe")
    low = next(((n, p.dtype) for n, p in theta if p.dtype in LOW_PRECISION), None) if exact else None
    if low is not None:
        raise TaskAffinityError(
            f"AffinityMeter.probe: shared parameter '{low[0]}' is {low[1]}: θ_s + Δ_i in it rounds "
            "away changes below 2^-8 of a weight (η‖g‖ is far smaller), so the exact lookahead "
            "would be rounding noise. Keep float32 weights (autocast for speed), or probe with "
            "lookahead='first_order'"
        )
    if "optimizer" in rules:
        check_optimizer_rule(optimizer, theta, "AffinityMeter.probe")


def check_gradients(theta, task: str, grads) -> list:
    """``add_gradients``' list: one tensor (or None) per θ_s parameter, each of its shape."""
    grads = list(grads)
    if len(grads) != len(theta):
        raise TaskAffinityError(
            f"AffinityMeter.add_gradients: task '{task}' has {len(grads)} gradient tensors, the "
            f"shared parameters are {len(theta)} (one per meter.shared, None where a parameter "
            "has no gradient)"
        )
    bad = next(
        (
            (n, tuple(g.shape), tuple(p.shape))
            for (n, p), g in zip(theta, grads)
            if g is not None and tuple(g.shape) != tuple(p.shape)
        ),
        None,
    )
    if bad is not None:
        raise TaskAffinityError(
            f"AffinityMeter.add_gradients: task '{task}': the gradient of '{bad[0]}' has shape "
            f"{bad[1]}, the parameter {bad[2]} (tensors in the order of meter.shared)"
        )
    return grads


def check_model(model: nn.Module, theta, *, vmap: bool) -> None:
    """Refusals that depend on how the model is built: compiled modules, sparse gradients with vmap."""
    compiled = next(
        (
            name or "model"
            for name, m in model.named_modules()
            if type(m).__name__ == "OptimizedModule" or getattr(m, "_compiled_call_impl", None) is not None
        ),
        None,
    )
    functorch_config = getattr(getattr(torch, "_functorch", None), "config", None)
    if compiled is not None and getattr(functorch_config, "donated_buffer", False):
        raise TaskAffinityError(
            f"AffinityMeter: '{compiled}' is compiled (torch.compile) and compiled backward "
            "passes donate their buffers, which forbids backpropagating each task's loss through "
            "the kept graph: set torch._functorch.config.donated_buffer = False before the "
            "model's first backward"
        )
    sparse = _sparse_owner(model, theta)
    if sparse is not None and vmap:
        raise TaskAffinityError(
            f"AffinityMeter: shared module '{sparse}' has sparse gradients (sparse=True), which "
            "the batched backward (vmap=True) cannot form; use vmap=False"
        )
    low = next((n for n, p in theta if p.dtype in LOW_PRECISION), None)
    if low is not None:
        log.warning(
            "AffinityMeter: shared parameter '%s' is %s: the streamed estimators are formed in float32, "
            "but probe() refuses the exact lookahead (θ_s + Δ_i in this dtype rounds Δ_i away)",
            low,
            dict(theta)[low].dtype,
        )


@contextlib.contextmanager
def compiled_backward_hint(where: str):
    """A compiled backward that donated its buffers (compiled inside a function, or wrapped where the
    meter cannot see it) refuses the per-task passes with a raw torch error: say what to do."""
    try:
        yield
    except RuntimeError as err:
        if "donated buffer" not in str(err):
            raise
        raise TaskAffinityError(
            f"{where}: a torch.compile'd part of the model donates its backward's buffers, which "
            "forbids backpropagating each task's loss through the kept graph: set "
            "torch._functorch.config.donated_buffer = False before the model's first "
            "backward"
        ) from err


def _sparse_owner(model, theta) -> str | None:
    ids = {id(p) for _, p in theta}
    for name, module in model.named_modules():
        if getattr(module, "sparse", False) is True and any(id(p) in ids for p in module.parameters(recurse=False)):
            return name
    return None


def graph_leaves(losses: list[torch.Tensor]) -> list[torch.Tensor]:
    """Every tensor a plain ``backward()`` of ``losses`` would write ``.grad`` into, in a fixed order.

    The autograd graph's leaves, whether or not they belong to the model: parameters the
    caller keeps elsewhere (an uncertainty weighting's log-variances, say) train as they
    would without the meter.
    """
    leaves, seen = [], set()
    stack = [loss.grad_fn for loss in reversed(losses) if loss.grad_fn is not None]
    stack_ids = set()
    for loss in losses:
        if loss.grad_fn is None and loss.requires_grad and id(loss) not in stack_ids:  # a leaf itself
            stack_ids.add(id(loss))
            leaves.append(loss)
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)  # AccumulateGrad: the leaf it writes
        if variable is not None:
            leaves.append(variable)
        stack.extend(child for child, _ in reversed(node.next_functions))
    return leaves
