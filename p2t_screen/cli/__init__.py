"""The `p2t` command: a thin layer over the library, one module per command group."""

from . import bench, imports, info, pull, results, screen, train  # noqa: F401  (each registers its commands)
from .app import app, main
from .common import (
                     EXIT_INTERNAL,
                     EXIT_INTERRUPTED,
                     EXIT_NO_RECORDS,
                     EXIT_OK,
                     EXIT_ROWS_NOT_OK,
                     EXIT_TERMINATED,
                     EXIT_USAGE,
)

__all__ = ["EXIT_INTERNAL", "EXIT_INTERRUPTED", "EXIT_NO_RECORDS", "EXIT_OK", "EXIT_ROWS_NOT_OK", "EXIT_TERMINATED",
           "EXIT_USAGE", "app", "main"]
