"""Background jobs: long work (benchmarks, curation, PARROT, RL) in detached processes whose
state lives in the session store. ``context.JobContext`` is what a job kind's code reports to."""
