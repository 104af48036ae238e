"""The interchange: one per endpoint, dispatches task batches to managers by capacity."""
