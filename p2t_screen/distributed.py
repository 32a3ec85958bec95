"""Kept for existing imports: the Ray engine lives in `p2t_screen.interop.ray` (and its files in
`p2t_screen.interop.ray_files`)."""

from .interop.ray import (  # noqa: F401
    DEFAULT_BATCH_SIZE,
    INSTALL_HINT,
    ScreenActor,
    batch_records,
    require_ray,
    screen_dataset,
    screen_parquet,
    user_error,
)
from .interop.ray_files import (  # noqa: F401
    DEFAULT_ROWS_PER_FILE,
    INPUT_SCHEMA,
    check_input_parquet,
    fasta_to_parquet,
    for_workers,
    prepare_output_dir,
    status_counts,
)
