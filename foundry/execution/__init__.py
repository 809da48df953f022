"""The execution plane: where and how ground truth runs.

    resources.py   what a verifier needs, as data (threads, memory, timeouts, isolation)
    cpus.py        how many cores this process may use (affinity, cgroup quota, Slurm)
    spec.py        which verifier a task needs (travels to workers)
    protocol.py    length-prefixed JSON frames between host and child
    launchers.py   how a child starts: as a process, in a bubblewrap sandbox
    proctree.py    a child's process tree: memory, CPU, sweeping leftovers
    runner.py      one domain's ground truth turning calls into verdicts or failures
    child.py       the verifier child's main loop
    host.py        the worker side: a warm child, watched, limited, killable
    executors.py   inline and Dask executors, chunks of work
    screening.py   rule checks of hostile input in a guarded child

Nothing here imports the control plane (``foundry.loop``).
"""
