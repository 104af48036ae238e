"""Worker processes: run one task at a time (see ``worker.worker``)."""
