"""The persistent task engine: device operations -> CWMP RPC sequences, RPC results -> store.

Tasks live in the store (`acs.store`), so a restart loses nothing; the only in-memory state
is the cursor of the task a live session is running. The package:

- `kinds`: one `TaskKind` declaration per kind (arguments, RPC generator, completion policy,
  coalescing, how the API offers it) in the registry `KINDS`; `validate_args` looks it up;
- `args`: the argument validators and TR-069 value rules they use;
- `run`: `TaskRun`, one attempt at one task, and what a kind's generator uses and returns;
- `engine`: `TaskEngine` (queue, Inform-time confirmations and recovery, transfers);
- `session`: `SessionTasks`, the driver of one CWMP session's ACS requests;
- `settings`: effective settings (type defaults overlaid by the device's own) vs the cache;
- `transfers`: `TransferWatch`, the timer that fails transfers never reported complete.

The names callers use are re-exported here.
"""

from acs.tasks.engine import TaskEngine
from acs.tasks.kinds import KINDS, TASK_KINDS, TaskKind, validate_args
from acs.tasks.run import REPORT_FAILED, SPV_BATCH, task_id_of_key, task_key
from acs.tasks.session import SessionTasks
from acs.tasks.settings import EffectiveSetting, model_type
from acs.tasks.transfers import TransferWatch

__all__ = [
    "KINDS",
    "REPORT_FAILED",
    "SPV_BATCH",
    "TASK_KINDS",
    "EffectiveSetting",
    "SessionTasks",
    "TaskEngine",
    "TaskKind",
    "TransferWatch",
    "model_type",
    "task_id_of_key",
    "task_key",
    "validate_args",
]
