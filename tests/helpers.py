"""Shared test helpers (imported by the test modules; pytest puts tests/ on sys.path)."""

import torch
from torch import nn

from lorabench.variants import PrepareContext, adapter_layers, adapter_parameters


@torch.no_grad()
def randomise(model: nn.Module, seed: int = 2, scale: float = 0.3) -> None:
    """Perturb every adapter parameter (shared ones too) so the update is far from its init."""
    gen = torch.Generator().manual_seed(seed)
    params = adapter_parameters(model) if adapter_layers(model) else list(model.parameters())
    for p in params:
        noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
        p.add_(scale * noise.to(p.dtype))


def prepare_context(model: nn.Module, batches: list, loss, params) -> PrepareContext:  # noqa: ANN001
    """A PrepareContext over fixed batches, cycled like the trainer's, on the CPU."""

    def take(n: int):  # noqa: ANN202
        for i in range(n):
            yield batches[i % len(batches)]

    return PrepareContext(model, take, loss, params, torch.device("cpu"))


def linear_with(weight, bias: bool = False) -> nn.Linear:  # noqa: ANN001
    """A Linear whose weight is `weight` (a tensor or nested list, shape (out, in))."""
    weight = torch.as_tensor(weight, dtype=torch.float32)
    base = nn.Linear(weight.shape[1], weight.shape[0], bias=bias)
    with torch.no_grad():
        base.weight.copy_(weight)
    return base


# A hand-computed gradient case for the gradient-based inits (LoRA-GA, LoRA-One): with
# `linear_loss` and inputs eye(3), targets HAND_G^T, the weight gradient is exactly HAND_G =
# 4 e1 f1^T - 1 e3 f2^T + 0.5 e4 f3^T (singular values 4, 1, 0.5), for weight HAND_W (4, 3).
HAND_G = [[4.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 0.5]]
HAND_W = [[1.0, 2.0, 0.0], [0.0, 1.0, -1.0], [2.0, 0.0, 1.0], [-1.0, 1.0, 0.0]]


def hand_model() -> nn.Module:
    """One bias-free Linear(3, 4) holding HAND_W, as module "0"."""
    model = nn.Sequential(nn.Linear(3, 4, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor(HAND_W))
    return model


def linear_loss(model: nn.Module, batch: dict) -> torch.Tensor:
    """L = sum(T * (X W^T)), so dL/dW = T^T X: a loss whose weight gradient is known exactly."""
    return (model(batch["x"]) * batch["t"]).sum()


def plan_and_work(db: str, runs_dir, *plan_args: str, work_args=()) -> None:  # noqa: ANN001
    """`lorabench plan --db DB ARGS…`, then one CPU worker until the queue is empty."""
    from typer.testing import CliRunner

    from lorabench.cli import app

    plan = CliRunner().invoke(app, ["plan", "--db", str(db), *plan_args])
    assert plan.exit_code == 0, plan.output
    work = CliRunner().invoke(
        app,
        ["work", "--db", str(db), "--gpu", "cpu", "--exit-when-empty", "--runs-dir",
         str(runs_dir), *work_args],
    )  # fmt: skip
    assert work.exit_code == 0, work.output


def only_job_metrics(db: str) -> list:
    """The (split, name, epoch, value) rows of the database's single job, which must be done."""
    from sqlalchemy import select

    from lorabench.store import open_engine
    from lorabench.store.models import Job, Metric

    with open_engine(db, read_only=True).connect() as conn:
        ((job_id, state, error),) = conn.execute(select(Job.id, Job.state, Job.error)).all()
        assert state == "done", error
        return conn.execute(
            select(Metric.split, Metric.name, Metric.epoch, Metric.value).where(
                Metric.job_id == job_id
            )
        ).all()
