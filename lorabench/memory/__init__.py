"""Peak GPU memory of a job before it starts: arithmetic on the job's config, its model's shape
(config.json, no weights) and the variant's declared costs (`catalog.cost`). Torch-free, like
the catalog it reads, so `plan --dry-run` and `tasks NAME` print it without loading torch.

`estimate_peak(job, shape)` is the number a GPU check compares with
`torch.cuda.max_memory_allocated()`; `families(jobs)` groups planned jobs for the dry run.
"""

from lorabench.memory.estimate import MemoryEstimate, estimate_peak
from lorabench.memory.families import Family, families, fitting, job_estimate
from lorabench.memory.shapes import ModelShape, find_shape, from_config

__all__ = [
    "Family",
    "MemoryEstimate",
    "ModelShape",
    "estimate_peak",
    "families",
    "find_shape",
    "fitting",
    "from_config",
    "job_estimate",
]
