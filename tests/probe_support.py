"""The fronts' held-out probe tests: a fixed probe batch of the digits data and its known answer."""

import torch
from affinity.test_meter import TASKS, Net, flat_grad
from torch import nn

PROBE_ROWS = torch.arange(1600, 1797)  # a fixed held-out batch: rows the training batches are not drawn from


def probe_losses_of(x, labels):
    def probe_losses(module):
        z = module.net.trunk(x[PROBE_ROWS])
        return {t: nn.functional.cross_entropy(module.net.heads[t](z), labels[t][PROBE_ROWS]) for t in TASKS}

    return probe_losses


def first_order_sgd_by_hand(state, x, labels, lr):
    """η g_i·g_j / L_j from torch.autograd.grad of the probe losses, the net at ``state``, in eval mode."""
    net = Net(norm=True)
    net.load_state_dict(state)
    net.eval()
    z = net.trunk(x[PROBE_ROWS])
    losses = {t: nn.functional.cross_entropy(net.heads[t](z), labels[t][PROBE_ROWS]) for t in TASKS}
    g = torch.stack([flat_grad(losses[t], list(net.trunk.parameters())) for t in TASKS])
    loss = torch.tensor([float(losses[t].detach()) for t in TASKS], dtype=torch.float64)
    return (lr * (g @ g.T) / loss[None, :]).numpy()
