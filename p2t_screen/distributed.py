"""Kept for existing imports: the Ray engine lives in `p2t_screen.interop.ray`."""

from .interop.ray import (  # noqa: F401
    DEFAULT_BATCH_SIZE,
    DEFAULT_ROWS_PER_FILE,
    INPUT_SCHEMA,
    INSTALL_HINT,
    ScreenActor,
    batch_records,
    check_input_parquet,
    fasta_to_parquet,
    for_workers,
    prepare_output_dir,
    require_ray,
    screen_dataset,
    screen_parquet,
    status_counts,
    user_error,
)
