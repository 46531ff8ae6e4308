"""One rank of a two-process data-parallel evaluation on CPU (run by test_fast_backend).

lm-eval's hf backend turns data parallelism on only when it sees several GPUs; on CPU this worker
gives the backend the rank, world size and accelerator that ``accelerate launch`` gives it on GPUs,
so lm-eval shards the documents, runs each rank's requests and gathers the metrics on rank 0.

    python -m torch.distributed.run --nproc_per_node 2 tests/data_parallel_worker.py MODEL OUT.json
"""

import json
import sys

import lm_eval
import torch.distributed as dist
from accelerate import Accelerator
from lm_eval.tasks import TaskManager

from harness_ext.lm_eval_plugin.autoload import project_tasks_dir
from harness_ext.lm_eval_plugin.backend import UnlearnHFLM

TASK = "tofu_forget01_unlearn"
METADATA = {"max_rows_per_set": 3, "embedding_model": "none", "nli_model": "none"}


def main(model_dir: str, output: str) -> None:
    dist.init_process_group("gloo")
    accelerator = Accelerator(cpu=True)
    lm = UnlearnHFLM(pretrained=model_dir, device="cpu", batch_size=4)
    lm.accelerator = accelerator
    lm._rank, lm._world_size = accelerator.process_index, accelerator.num_processes
    manager = TaskManager(
        include_path=project_tasks_dir(),
        include_defaults=False,
        metadata={**METADATA, "pretrained": model_dir},
    )
    results = lm_eval.simple_evaluate(
        model=lm, tasks=[TASK], task_manager=manager, bootstrap_iters=0
    )
    if results is not None:  # rank 0 gathers everything
        record = {"world_size": lm.world_size, "metrics": results["results"][TASK]}
        with open(output, "w") as handle:
            json.dump(record, handle, default=str)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
