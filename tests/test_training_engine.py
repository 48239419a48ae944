"""Loss and accuracy of the loop equal a hand computation, partial last batch included."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dogclf.training.engine import StepConfig, evaluate, train_one_epoch

# Five samples, three classes; the "images" are the logits themselves (identity model).
LOGITS = [
    [2.0, 0.5, -1.0],  # target 0: right
    [0.1, 0.2, 3.0],  # target 2: right
    [1.0, 1.5, 0.0],  # target 0: wrong (predicts 1)
    [-0.5, 2.5, 0.3],  # target 1: right
    [0.0, 0.0, 1.0],  # target 1: wrong (predicts 2), alone in the last batch
]
TARGETS = [0, 2, 0, 1, 1]


def hand_loss_and_accuracy() -> tuple[float, float]:
    losses, correct = [], 0
    for row, target in zip(LOGITS, TARGETS, strict=True):
        log_sum_exp = math.log(sum(math.exp(v) for v in row))
        losses.append(log_sum_exp - row[target])
        correct += int(max(range(3), key=lambda i: row[i]) == target)
    return sum(losses) / len(losses), correct / len(TARGETS)


def identity_model() -> nn.Module:
    model = nn.Linear(3, 3)
    with torch.no_grad():
        model.weight.copy_(torch.eye(3))
        model.bias.zero_()
    return model


def loader() -> DataLoader[tuple[torch.Tensor, ...]]:
    data = TensorDataset(torch.tensor(LOGITS), torch.tensor(TARGETS))
    return DataLoader(data, batch_size=2, shuffle=False)  # batches of 2, 2 and 1


def test_hand_computation_is_what_it_claims() -> None:
    loss, accuracy = hand_loss_and_accuracy()
    assert accuracy == 0.6  # 3 of 5, a float: floor division would give 0
    assert 0.6 < loss < 1.2


def test_evaluate_is_a_per_sample_mean_with_a_partial_last_batch() -> None:
    loss, accuracy = hand_loss_and_accuracy()
    stats = evaluate(identity_model(), loader(), StepConfig(torch.device("cpu")))
    assert stats.samples == 5
    assert stats.accuracy == accuracy
    assert math.isclose(stats.loss, loss, rel_tol=1e-6)
    # The mistake this replaces: averaging batch means over-weights the lone last sample.
    batch_means = [
        nn.functional.cross_entropy(
            torch.tensor(LOGITS[i : i + 2]), torch.tensor(TARGETS[i : i + 2])
        ).item()
        for i in (0, 2, 4)
    ]
    assert not math.isclose(sum(batch_means) / 3, loss, rel_tol=1e-3)


def test_train_one_epoch_reports_the_same_numbers_before_each_step() -> None:
    model = identity_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # weights stay put
    loss, accuracy = hand_loss_and_accuracy()
    stats = train_one_epoch(
        model, nn.CrossEntropyLoss(), optimizer, loader(), StepConfig(torch.device("cpu"))
    )
    assert stats.samples == 5 and stats.local_samples == 5
    assert stats.accuracy == accuracy
    assert math.isclose(stats.loss, loss, rel_tol=1e-6)


def test_evaluate_runs_in_eval_mode_without_gradients() -> None:
    seen: list[tuple[bool, bool]] = []

    class Probe(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.dropout = nn.Dropout(0.5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append((self.training, torch.is_grad_enabled()))
            return self.dropout(x)

    probe = Probe().train()
    stats = evaluate(probe, loader(), StepConfig(torch.device("cpu")))
    assert seen and all(mode == (False, False) for mode in seen)
    assert math.isclose(stats.loss, hand_loss_and_accuracy()[0], rel_tol=1e-6)  # no dropout
