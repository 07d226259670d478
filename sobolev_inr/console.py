"""The ``sobolev-inr`` command: any registered task from any folder, plus sweeps and reports.

    sobolev-inr list                                        # the tasks and their commands
    sobolev-inr image_regression --config my.txt            # train (the default command)
    sobolev-inr inverse_rendering eval --config fern.txt    # another command of a task
    sobolev-inr image_regression --help                     # a task's options
    sobolev-inr sweep my_sweep.txt --jobs 2                 # python -m sobolev_inr.sweep
    sobolev-inr report logs/                                # python -m sobolev_inr.report

``python -m sobolev_inr`` is the same command. Relative paths in a config (data, logging_root) are
relative to the folder the command runs in.
"""
from __future__ import annotations

import sys
from typing import List, Optional

USAGE = """usage: sobolev-inr <task> [<command>] [options]   (command: train by default; see `list`)
       sobolev-inr list
       sobolev-inr sweep <sweep file> [options]
       sobolev-inr report <runs folder> [options]"""


def main(argv: Optional[List[str]] = None) -> int:
    from .config.cli import run_entry_point
    from .tasks import get_task, task_names
    from .tasks.entry import format_task_list

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE + "\n\n" + __doc__.split("\n\n")[0] + "\n\ntasks:")
        print("\n".join("  " + line for line in format_task_list([get_task(n) for n in task_names()])))
        return 0
    first, rest = argv[0], argv[1:]
    if first == "list":
        print("\n".join(format_task_list([get_task(n) for n in task_names()])))
        return 0
    if first in ("sweep", "report"):
        from importlib import import_module

        return import_module(f".{first}", __package__).main(rest)
    if first not in task_names():
        print(f"error: no task named {first!r}; the tasks: {', '.join(task_names())}\n{USAGE}", file=sys.stderr)
        return 2
    entry = get_task(first)
    command = "train"
    if rest and not rest[0].startswith("-"):
        command, rest = rest[0], rest[1:]
        if command not in entry.commands:
            print(f"error: task {first} has no command {command!r}; its commands: {', '.join(entry.commands)}",
                  file=sys.stderr)
            return 2
    prog = f"sobolev-inr {first}" + ("" if command == "train" else f" {command}")
    run_entry_point(lambda args: entry.run(command, args, prog=prog), rest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
