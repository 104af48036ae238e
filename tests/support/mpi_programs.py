"""MPI programs the MPI tests build with ``mpicc`` (Debian's Open MPI)."""

from __future__ import annotations

import subprocess
from pathlib import Path

HELLO = r"""
#include <mpi.h>
#include <stdio.h>
int main(int argc, char **argv) {
    int rank, size;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    printf("hello from rank %d of %d\n", rank, size);
    MPI_Finalize();
    return 0;
}
"""

REDUCE = r"""
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
/* every rank r contributes (r + 1) * factor; rank 0 prints the sum */
int main(int argc, char **argv) {
    int rank, size;
    long factor = atol(argv[1]), mine, total = 0;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    mine = (rank + 1) * factor;
    MPI_Reduce(&mine, &total, 1, MPI_LONG, MPI_SUM, 0, MPI_COMM_WORLD);
    if (rank == 0) printf("sum %ld over %d ranks\n", total, size);
    MPI_Finalize();
    return 0;
}
"""

ROOT_OPTIONS = ["--allow-run-as-root", "--oversubscribe"]
"""Open MPI refuses to start as root without the first; this host has fewer cores than ranks."""


def build(folder: Path, name: str, source: str) -> str:
    """Compile ``source`` with mpicc into ``folder/name``; returns the program's path."""
    (folder / f"{name}.c").write_text(source)
    subprocess.run(["mpicc", "-o", str(folder / name), str(folder / f"{name}.c")], check=True)
    return str(folder / name)
